#!/usr/bin/env bash
# Sets up (idempotently) and runs every test: the one command the README gives.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_nisshi
ensure_browser
# The dashboard test's screenshot is kept here (a CI artifact).
export LOCKSTEP_ARTIFACTS="${LOCKSTEP_ARTIFACTS:-$PWD/target/test-artifacts}"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# The Kafka tests run against a real broker on loopback, stopped afterwards.
source scripts/broker.sh
trap broker_stop EXIT
broker_start
cargo test --release --workspace
echo "test artifacts (the dashboard screenshot): $LOCKSTEP_ARTIFACTS"
