#!/usr/bin/env bash
# Install checkov into its own virtualenv, .venv-checkov, beside the project's .venv.
#
# checkov pins many libraries at versions that clash with kfp and kserve, so it never shares
# the main environment. Idempotent: a second run with the same pin returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-checkov
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
STAMP="$VENV/.installed-checkov-$CHECKOV_VERSION"

# The stamp is written only after checkov has run once, so its presence is enough.
if [ -f "$STAMP" ] && [ -x "$VENV/bin/checkov" ]; then
  exit 0
fi

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# The folder ignores itself, so git never sees it whatever the root .gitignore says.
printf '*\n' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
rm -f "$VENV"/.installed-checkov-*
"$VENV/bin/checkov" --version >/dev/null
touch "$STAMP"
echo "checkov $("$VENV/bin/checkov" --version) installed in $VENV"
