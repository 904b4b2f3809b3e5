#!/usr/bin/env bash
# The Kafka example, end to end: starts a broker on loopback, feeds topic
# "clicks" (4 partitions) with `lockstep run producer.json`, runs job.json as
# 2 processes × 2 workers (a timely cluster on loopback), and checks the
# result against expected/. The graphs hold @BROKERS@, @CLICKS@ and @OUT@
# placeholders, filled in here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
cd "$root"
source scripts/setup.sh
ensure_nisshi
cargo build --release --bin lockstep
LOCKSTEP="$CARGO_TARGET_DIR/release/lockstep"
source scripts/broker.sh
trap broker_stop EXIT
broker_start
broker_topic clicks 4
broker_topic clicks-per-user 2

work="$(mktemp -d)"
for g in producer job; do
  sed -e "s/@BROKERS@/$LOCKSTEP_KAFKA_BROKERS/g" -e "s/@CLICKS@/clicks/g" \
      -e "s/@OUT@/clicks-per-user/g" "$here/$g.json" > "$work/$g.json"
done
"$LOCKSTEP" run "$work/producer.json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$(free_port)" "$(free_port)" > "$work/hosts"
"$LOCKSTEP" run "$work/job.json" --workers 2 --processes 2 --process-id 1 --hosts "$work/hosts" -q &
peer=$!
"$LOCKSTEP" run "$work/job.json" --workers 2 --processes 2 --process-id 0 --hosts "$work/hosts"
wait "$peer"

echo "== per_user.out.jsonl (also in topic clicks-per-user, keyed by user)"
head -5 "$work/per_user.out.jsonl"
echo "..."
if cmp -s "$work/per_user.out.jsonl" "$here/expected/per_user.out.jsonl"; then
  echo "identical to examples/kafka-partitioned/expected/per_user.out.jsonl"
else
  echo "differs from expected/per_user.out.jsonl" >&2
  exit 1
fi
