#!/usr/bin/env bash
# Installs Google's official Python client for Cloud Monitoring (google-cloud-monitoring, the
# versions pinned in scripts/python-client-requirements.txt) into a virtual environment at
# target/python-client/venv. crates/gcm-emulator/tests/python_client.rs runs it against the
# emulator. Needs `python3` with the `venv` module (scripts/install-deps.sh installs Debian's
# python3-venv when it is missing). Safe to run again: when the pinned list has not changed since
# the last install it does nothing. Never asks anything (works with CI=true and no stdin).
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=scripts/python-client-requirements.txt
home=target/python-client
venv=$home/venv
stamp=$home/installed

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "python-client: $python not found; run scripts/install-deps.sh" >&2
  exit 1
fi
# What the stamp records: the pinned list and the interpreter it was installed with.
want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "python-client: installing $(grep -m1 '^google-cloud-monitoring==' "$requirements") into $venv" >&2
rm -rf "$venv" "$stamp"
mkdir -p "$home"
if ! "$python" -m venv "$venv" </dev/null; then
  rm -rf "$venv"
  echo "python-client: '$python -m venv' failed; install Debian's python3-venv (scripts/install-deps.sh does)" >&2
  exit 1
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# Wheels only: building grpcio from source would take many minutes.
"$venv/bin/python" -m pip install --quiet --only-binary=:all: -r "$requirements" </dev/null
"$venv/bin/python" -c 'import google.cloud.monitoring_v3' </dev/null
echo "$want" >"$stamp"
