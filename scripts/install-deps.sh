#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian machine, if it is missing:
# Prometheus, the node exporter, Chromium (the status page is checked in a headless browser),
# OpenSSL's command line (test certificates and keys) and Python's venv module, all Debian
# packages; then Google's Python client for Cloud Monitoring in target/ (scripts/python-client.sh).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# A font for Chromium to render text with (only recommended by the package).
[ -d /usr/share/fonts/truetype/liberation ] || need+=(fonts-liberation)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The memory allocator (jemalloc) is built from source with the C compiler and make.
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The emulator is checked with Google's Python client, installed in a virtual environment.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then
  exec ./scripts/python-client.sh
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "install-deps: need root (or sudo) to install: ${need[*]}" >&2; exit 1
  fi
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y --no-install-recommends "${need[@]}" </dev/null; then
  $sudo apt-get update -qq </dev/null
  $sudo apt-get install -y --no-install-recommends "${need[@]}" </dev/null
fi
# The Debian packages start services through systemd where it runs; the tests and the demo
# start their own instances on other ports, so those are left alone.

./scripts/python-client.sh
