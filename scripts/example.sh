#!/usr/bin/env bash
# Sets up (idempotently), builds, and runs the example job examples/clicks,
# then prints its outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --bin lockstep
LOCKSTEP="$CARGO_TARGET_DIR/release/lockstep"
"$LOCKSTEP" validate examples/clicks/graph.json
"$LOCKSTEP" run examples/clicks/graph.json --workers 2
for f in examples/clicks/*.out.*; do
  echo "== $f"
  cat "$f"
done
