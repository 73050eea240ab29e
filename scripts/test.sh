#!/usr/bin/env bash
# The whole test suite: installs what it needs, then checks formatting, lints and runs every
# test, including the end-to-end test against a real Prometheus and node exporter.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
