#!/usr/bin/env bash
# Catch-up benchmark: the sidecar (release build) reads a recorded Prometheus 2.42 WAL
# (26.3 M samples, 181 k series, bench/bench-static.tar.zst) with the Prometheus API replayed
# locally and a counting CreateTimeSeries sink; prints samples/s, CPU-seconds per million
# samples, peak RSS and bytes per series. Not part of the test suite; takes a few minutes.
#
#   ./scripts/bench.sh [extra sidecar flags after --]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v zstd >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends zstd </dev/null
fi
target_dir=${CARGO_TARGET_DIR:-target}
input=$target_dir/bench-input/bench-static
if [ ! -f "$input/walcount.json" ]; then
  mkdir -p "$target_dir/bench-input"
  zstd -dc bench/bench-static.tar.zst | tar -x -C "$target_dir/bench-input"
fi
cargo build --release --locked -q -p stackdriver-prometheus-sidecar -p sidecar-bench
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
exec "$target_dir/release/sidecar-bench" --input "$input" \
  --sidecar "$target_dir/release/stackdriver-prometheus-sidecar" "$@"
