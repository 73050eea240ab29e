#!/usr/bin/env bash
# The whole test suite: installs what it needs, then checks formatting, lints and runs every
# test, including the end-to-end test against a real Prometheus and node exporter.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
./scripts/check-large-files.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q
cargo test --workspace --locked
