#!/usr/bin/env bash
# Build a stand-in for python:3.11-slim-bookworm from Debian's own packages and `docker import` it.
#
# Why: these machines reach Debian's archive and PyPI but not Docker Hub, so the official base
# cannot be pulled. The stand-in carries what the Dockerfile relies on in the official image:
# Python 3.11 with pip >= 24, setuptools and wheel (kfp-server-api is published only as source),
# `python` and `pip` first on PATH, CA certificates, tzdata, and nothing to compile with. Debian's
# system Python is externally managed, so that Python is a venv at /opt/python.
#
# Usage: tools/build_base_image.sh [TAG]   (default mlco-base:python3.11-bookworm)
# Needs root, debootstrap and a running Docker daemon. Skips the work when TAG already exists
# (FORCE=1 rebuilds). The host's CA bundle is used during the build only and not left in the image.
set -euo pipefail

tag=${1:-mlco-base:python3.11-bookworm}
docker=${DOCKER:-/usr/bin/docker}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ -z "${FORCE:-}" ] && "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists (FORCE=1 rebuilds)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }

root=$(mktemp -d /var/tmp/mlco-base.XXXXXX)
cleanup() { umount "$root/proc" 2>/dev/null || true; rm -rf "$root"; }
trap cleanup EXIT

echo "debootstrap bookworm into $root"
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,tzdata,netbase \
  bookworm "$root" "$mirror" >/dev/null

cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$ca_bundle" "$root/tmp/host-ca.crt"
mount -t proc proc "$root/proc"
chroot "$root" env -i PATH=/usr/bin:/bin /usr/bin/python3 -m venv /opt/python
# A clean environment: the host's pip settings (find-links, index mirrors) mean nothing in the chroot.
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root PIP_CERT=/tmp/host-ca.crt \
  SSL_CERT_FILE=/tmp/host-ca.crt REQUESTS_CA_BUNDLE=/tmp/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
  /opt/python/bin/pip install --quiet --index-url https://pypi.org/simple \
  "pip>=24" "setuptools>=77" wheel
umount "$root/proc"
rm -f "$root/tmp/host-ca.crt" "$root/etc/resolv.conf"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info
find "$root/opt/python" -name __pycache__ -type d -prune -exec rm -rf {} +

echo "docker import -> $tag"
tar -C "$root" -c . | "$docker" import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
"$docker" run --rm "$tag" python -c 'import setuptools, wheel, pip, sys; print("base ready:", sys.version.split()[0], "pip", pip.__version__)'
