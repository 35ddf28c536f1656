#!/usr/bin/env bash
# Interop: consumer groups of kcat (librdkafka's balanced consumer, -G) and
# kafkajs (npm) against `chronik serve`. For each client, on a topic of 4
# partitions:
#   1. kcat produces 1000 messages; the group consumer starts;
#   2. once it is consuming, the broker is restarted under it (SIGTERM, a
#      new process on the same data directory and port);
#   3. 1000 more are produced; the consumer must see all 2000 (set
#      semantics: every message at least once), then stops (leaving the
#      group, committing);
#   4. 500 more are produced and a second consumer of the same group must
#      see them, starting from the committed offsets (not from the start).
# Every wait is bounded.
set -eEuo pipefail # -E: the ERR trap fires inside functions too
cd "$(dirname "$0")/.."
work=$(mktemp -d)
port=${CHRONIK_CI_GROUP_PORT:-19093}
broker=127.0.0.1:$port
go build -o "$work/chronik" .

pid=
consumer=
start_broker() {
  "$work/chronik" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-format json \
    --default-partitions 4 >>"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if kcat -b "$broker" -L -m 2 >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "groups: chronik did not come up"
  return 1
}
stop_broker() {
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=
  if [ "$rc" -ne 0 ]; then echo "groups: chronik exited $rc after SIGTERM"; return 1; fi
}
# stop_consumer: SIGTERM (the consumer leaves its group and commits), then
# SIGKILL after 30s.
stop_consumer() {
  kill -TERM "$consumer" 2>/dev/null || true
  if ! timeout 30 tail --pid="$consumer" -f /dev/null; then
    echo "groups: consumer did not stop within 30s"
    kill -KILL "$consumer" 2>/dev/null || true
  fi
  wait "$consumer" 2>/dev/null || true
  consumer=
}
cleanup() {
  if [ -n "$consumer" ]; then kill -KILL "$consumer" 2>/dev/null || true; fi
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
}
trap 'cleanup; echo "--- serve log (tail)"; tail -n 30 "$work/serve.log"; for f in "$work"/*.err; do echo "--- $f"; tail -n 20 "$f"; done' ERR
trap cleanup EXIT

# produce TOPIC FROM TO: messages msg-FROM .. msg-TO, acks=all.
produce() {
  seq -f "msg-%06g" "$2" "$3" | timeout 60 kcat -b "$broker" -P -t "$1" -X topic.request.required.acks=-1
}

# Consumers print "partition offset value" lines.
values() { awk '{print $3}' "$1" | sort -u; }

# wait_for FILE GROUP FROM TO: until FILE holds every message FROM..TO (90s).
wait_for() {
  local file=$1 deadline=$((SECONDS + 90))
  seq -f "msg-%06g" "$3" "$4" | sort >"$work/want"
  while true; do
    values "$file" | comm -23 "$work/want" - >"$work/missing"
    if [ ! -s "$work/missing" ]; then return 0; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "groups: $(wc -l <"$work/missing") of messages $3..$4 never arrived in $file (first: $(head -1 "$work/missing"))"
      "$work/chronik" group describe --brokers "$broker" "$2" || true
      return 1
    fi
    sleep 0.2
  done
}

# start_consumer CLIENT GROUP TOPIC OUT: a group consumer in the background
# (stop_consumer or the exit trap ends it).
start_consumer() {
  case $1 in
  kcat)
    # -E: keep going while the broker restarts ("all brokers down" is
    # fatal to kcat otherwise); -u: unbuffered output.
    kcat -E -u -b "$broker" -G "$2" -X auto.offset.reset=earliest -X session.timeout.ms=10000 \
      -f '%p %o %s\n' -q "$3" >"$4" 2>"$4.err" &
    ;;
  kafkajs)
    node .ci/kafkajs-consumer.js "$broker" "$2" "$3" >"$4" 2>"$4.err" &
    ;;
  esac
  consumer=$!
}

run_case() {
  local client=$1 topic=groups-$1 group=ci-$1-$$ t0=$SECONDS
  produce "$topic" 1 1000
  start_consumer "$client" "$group" "$topic" "$work/$client-1.out"
  for _ in $(seq 1 300); do # 30s for the group to form and start
    if [ -s "$work/$client-1.out" ]; then break; fi
    sleep 0.1
  done
  if [ ! -s "$work/$client-1.out" ]; then echo "groups: $client consumed nothing"; return 1; fi
  echo "groups: $client consuming ($(wc -l <"$work/$client-1.out") messages so far); restarting the broker"
  stop_broker
  start_broker
  produce "$topic" 1001 2000
  wait_for "$work/$client-1.out" "$group" 1 2000
  stop_consumer
  echo "groups: $client saw all 2000 messages across the restart ($(wc -l <"$work/$client-1.out") deliveries)"

  produce "$topic" 2001 2500
  start_consumer "$client" "$group" "$topic" "$work/$client-2.out"
  wait_for "$work/$client-2.out" "$group" 2001 2500
  stop_consumer
  local old
  old=$(values "$work/$client-2.out" | awk '$0 < "msg-002001"' | wc -l)
  if [ "$old" -ge 2000 ]; then
    echo "groups: $client's second consumer read everything again: committed offsets were lost"
    return 1
  fi
  echo "groups: $client's second consumer resumed from the committed offsets (re-read $old older messages) in $((SECONDS - t0))s total"
}

start_broker
run_case kcat

npm_dir="$work/npm"
mkdir -p "$npm_dir"
(cd "$npm_dir" && timeout 180 npm install --no-audit --no-fund --loglevel=error kafkajs@2 >/dev/null)
export NODE_PATH="$npm_dir/node_modules"
echo "groups: kafkajs $(node -p 'require("kafkajs/package.json").version')"
run_case kafkajs

stop_broker
trap - ERR
echo "groups: clean exit after SIGTERM"
