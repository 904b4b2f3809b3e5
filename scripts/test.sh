#!/usr/bin/env bash
# Sets up (idempotently) and runs every test: the one command the README gives.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_nisshi
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# The Kafka tests run against a real broker on loopback, stopped afterwards.
source scripts/broker.sh
trap broker_stop EXIT
broker_start
cargo test --release --workspace
