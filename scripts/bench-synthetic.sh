#!/usr/bin/env bash
# Catch-up benchmark on synthetic WALs of several sizes: for each SERIESxSAMPLES, generates an
# input with `sidecar-bench generate` (under target/bench-input/, regenerated when missing or
# older than 6 h, as the sidecar refuses points older than 25 h), runs the release sidecar on it
# like scripts/bench.sh does, checks that every expected point arrived, and ends with a table:
# how samples/s, CPU-seconds per million samples and memory per series change with the number
# of series and of samples. Not part of the test suite; a few minutes.
#
#   ./scripts/bench-synthetic.sh [SERIESxSAMPLES ...] [-- extra sidecar flags]
#
# Default sizes: 100000x10 100000x100 1000000x10 (the last two have the same number of samples
# over 10 times more series). TARGETS (default 100) and SCRAPE_INTERVAL (default 15s) set the
# other generator parameters.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  sizes+=("$1")
  shift
done
[ "${1:-}" = "--" ] && shift
[ ${#sizes[@]} -eq 0 ] && sizes=(100000x10 100000x100 1000000x10)
targets=${TARGETS:-100}
interval=${SCRAPE_INTERVAL:-15s}
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --release --locked -q -p stackdriver-prometheus-sidecar -p sidecar-bench
bench=$target_dir/release/sidecar-bench
sidecar=$target_dir/release/stackdriver-prometheus-sidecar
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

summary=()
for size in "${sizes[@]}"; do
  series=${size%x*}
  samples=${size#*x}
  if ! [[ $series =~ ^[0-9]+$ && $samples =~ ^[0-9]+$ ]]; then
    echo "not SERIESxSAMPLES: $size" >&2
    exit 2
  fi
  input=$target_dir/bench-input/synthetic-${series}x${samples}-${targets}t-${interval}
  if [ ! -f "$input/walcount.json" ] || [ -n "$(find "$input/walcount.json" -mmin +360)" ]; then
    "$bench" generate --series "$series" --samples-per-series "$samples" --targets "$targets" \
      --scrape-interval "$interval" --out "$input"
  fi
  echo "== $size: $input"
  log=$input/last-run.txt
  "$bench" --input "$input" --sidecar "$sidecar" "$@" | tee "$log"
  field() { grep -m1 "$1" "$log" | sed -E "s|$2|\\1|"; }
  summary+=("$(printf '%-14s %12s %8s %8s %12s %10s %12s %8s' "$size" \
    "$(field '^input:' '^input: ([0-9]+) samples.*')" \
    "$(field '^first point' '.*every WAL sample read after ([0-9.]+) s.*')" \
    "$(field '^first point' '.*all delivered after ([0-9.]+) s.*')" \
    "$(field '^throughput:' '^throughput: ([0-9]+) samples/s.*')" \
    "$(field '^cpu:' '.*= ([0-9.]+) CPU-s.*')" \
    "$(field '^peak RSS:' '^peak RSS: ([0-9.]+) MB.*')" \
    "$(field '^peak RSS:' '.*= ([0-9]+) bytes per series.*')")")
done

echo
printf '%-14s %12s %8s %8s %12s %10s %12s %8s\n' "series×samples" "WAL samples" "read s" \
  "total s" "samples/s" "CPU-s/M" "peak RSS MB" "B/series"
printf '%s\n' "${summary[@]}"
echo "(read s: until the sidecar had read every WAL sample; total s: until every point was"
echo "acknowledged, including the half second the reader must be idle before partial batches go out.)"
