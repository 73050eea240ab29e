#!/usr/bin/env bash
# Bounded fuzzing of the WAL decoder with cargo-fuzz (libFuzzer): every target runs for
# SECONDS (default 60) and must not crash, hang or allocate without bound. Not part of the
# test suite (it needs a sanitizer build); run it after changing crates/prometheus-wal.
#
#   ./scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../crates/prometheus-wal"
seconds=${1:-60}

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly-only compiler flags; a stable toolchain allows them this way.
if ! rustc --version | grep -q nightly; then export RUSTC_BOOTSTRAP=1; fi

# Seed the segment target with real Prometheus segments from the test fixtures.
corpus=fuzz/corpus/segment
if [ ! -d "$corpus" ]; then
  mkdir -p "$corpus"
  tmp=$(mktemp -d)
  tar -xzf tests/fixtures/prometheus-2.42-wal.tar.gz -C "$tmp" real-wal/D-exact-counts/wal/00000000
  head -c 65536 "$tmp/real-wal/D-exact-counts/wal/00000000" > "$corpus/d-first-pages"
  rm -rf "$tmp"
fi
for target in segment records; do
  echo "fuzzing $target for ${seconds}s" >&2
  cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10
done
