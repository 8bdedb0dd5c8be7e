#!/usr/bin/env bash
# Install MLServer and its LightGBM runtime into their own virtualenv, .venv-mlserver.
#
# bench/serving_load.py serves the champion's LightGBM booster with MLServer as the baseline.
# MLServer pins fastapi, uvicorn and protobuf ranges of its own, so it never shares the project's
# .venv (kserve pins those too). Idempotent: a second run with the same pins returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-mlserver
MLSERVER_VERSION=${MLSERVER_VERSION:-1.7.1}
# MLServer 1.7.1's inference workers call asyncio.get_event_loop(), which uvloop 0.22 turned
# into an error: with a newer uvloop every model fails to load under the default settings.
UVLOOP_PIN=${UVLOOP_PIN:-uvloop<0.22}
STAMP="$VENV/.installed-mlserver-$MLSERVER_VERSION-uvloop0.21"

if [ -f "$STAMP" ] && "$VENV/bin/mlserver" --help >/dev/null 2>&1; then
  exit 0
fi

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# The folder ignores itself, so git never sees it whatever the root .gitignore says.
printf '*\n' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "mlserver==$MLSERVER_VERSION" "mlserver-lightgbm==$MLSERVER_VERSION" "$UVLOOP_PIN"
rm -f "$VENV"/.installed-mlserver-*
"$VENV/bin/mlserver" --help >/dev/null
touch "$STAMP"
echo "mlserver $MLSERVER_VERSION installed in $VENV" >&2
