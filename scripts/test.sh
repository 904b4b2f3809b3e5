#!/usr/bin/env bash
# Sets up (idempotently) and runs every test: the one command the README gives.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
