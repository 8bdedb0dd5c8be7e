#!/usr/bin/env bash
# Make sure a Docker daemon answers: install Debian's docker.io (and debootstrap, for the stand-in
# base image) when missing, and start dockerd in the background when none runs. Returns at once
# when a daemon already answers. Needs root for the install and the start.
set -euo pipefail
docker=/usr/bin/docker
if [ -x "$docker" ] && "$docker" info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi
log=${DOCKERD_LOG:-/var/log/mlco-dockerd.log}
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 60); do
  if "$docker" info >/dev/null 2>&1; then echo "dockerd is up (log: $log)"; exit 0; fi
  sleep 1
done
echo "dockerd did not answer within 60 s; see $log" >&2
exit 1
