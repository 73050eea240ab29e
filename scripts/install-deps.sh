#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian machine, if it is missing:
# Prometheus, the node exporter, and Chromium (the status page is checked in a headless
# browser), all Debian packages. Safe to run again.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# A font for Chromium to render text with (only recommended by the package).
[ -d /usr/share/fonts/truetype/liberation ] || need+=(fonts-liberation)
[ ${#need[@]} -eq 0 ] && exit 0

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
