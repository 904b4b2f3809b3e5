#!/usr/bin/env bash
# The long crash test: a windowed + join job over EVENTS nexmark events
# (default 1,000,000) is killed with kill -9 at random instants KILLS times
# (default 24; every fourth crash lands inside a checkpoint write, before or
# after its batch), restarted each time with --workers cycling 1, 3, 2, and
# its final output must equal a run that never crashed, byte for byte.
#
#   bash scripts/crash-test.sh [EVENTS] [KILLS] [SEED]
#
# CI runs the same test with 200,000 events and 8 crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export LOCKSTEP_CRASH_EVENTS="${1:-1000000}"
export LOCKSTEP_CRASH_KILLS="${2:-24}"
export LOCKSTEP_CRASH_SEED="${3:-7}"
cargo test --release --test cli -- --exact \
  cli::checkpoint::kill_9_at_random_instants_and_restarting_gives_the_bytes_of_a_run_that_never_crashed \
  --nocapture
