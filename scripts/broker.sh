#!/usr/bin/env bash
# A Kafka-protocol broker (nisshi, in memory) on loopback for tests and
# examples. Source it after scripts/setup.sh (which installs nisshi), then:
#   broker_start        # starts it on a free port; exports LOCKSTEP_KAFKA_BROKERS
#   broker_topic T N    # creates topic T with N partitions
#   broker_stop         # stops it (its data is gone: memory storage)

broker_start() {
  local port dir
  port="${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
  dir="$(mktemp -d)"
  # nisshi reads ./.env: start it from an empty directory.
  (cd "$dir" && exec "$NISSHI_BIN" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://nisshi/ \
      --group-initial-rebalance-delay 0s --silent >"$dir/broker.log" 2>&1) &
  BROKER_PID=$!
  BROKER_DIR="$dir"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export LOCKSTEP_KAFKA_BROKERS="127.0.0.1:$port"
      echo "broker: nisshi on 127.0.0.1:$port (pid $BROKER_PID)" >&2
      return 0
    fi
    sleep 0.1
  done
  echo "broker: nisshi did not open 127.0.0.1:$port within 10 s; its log:" >&2
  cat "$dir/broker.log" >&2
  return 1
}

broker_topic() {
  "$NISSHI_BIN" topic create "$1" --partitions "$2" --broker "tcp://$LOCKSTEP_KAFKA_BROKERS" >/dev/null
}

broker_stop() {
  if [ -n "${BROKER_PID:-}" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    rm -rf "$BROKER_DIR"
    BROKER_PID=""
  fi
}
