#!/usr/bin/env bash
# Topic configs: a topic created by the kafkajs admin with
# compression.type=zstd (the broker recompresses what clients send
# uncompressed or with another codec); kcat produces to it with none, gzip
# and lz4 and consumes everything back. (The cleanup.policy=compact half
# waits for log compaction.)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
port=${CHRONIK_CI_PORT:-19092}
broker=127.0.0.1:$port
go build -o "$work/chronik" .
"$work/chronik" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-format json >"$work/serve.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap 'cleanup; echo "--- serve log (tail)"; tail -n 50 "$work/serve.log"' ERR
trap cleanup EXIT

for i in $(seq 1 100); do
  if kcat -b "$broker" -L -m 2 >/dev/null 2>&1; then break; fi
  sleep 0.1
done

npm_dir="$work/npm"
mkdir -p "$npm_dir"
(cd "$npm_dir" && timeout 180 npm install --no-audit --no-fund --loglevel=error kafkajs@2 >/dev/null)
export NODE_PATH="$npm_dir/node_modules"
topic=zstd-topic
timeout 120 node .ci/kafkajs-topicconfig.js "$broker" "$topic"

n=3000
: >"$work/in.txt"
for codec in none gzip lz4; do
  seq -f "$codec-%05g $(head -c 100 /dev/zero | tr '\0' 'y')" 1 $n >"$work/in-$codec.txt"
  kcat -b "$broker" -P -t "$topic" -z "$codec" -X topic.request.required.acks=-1 -l "$work/in-$codec.txt"
  cat "$work/in-$codec.txt" >>"$work/in.txt"
done
timeout 60 kcat -b "$broker" -C -t "$topic" -o beginning -c $((3 * n)) -e -q >"$work/out.txt"
if ! cmp -s "$work/in.txt" "$work/out.txt"; then
  echo "topicconfig: consumed data differs from produced ($(wc -l <"$work/out.txt") lines)"
  exit 1
fi
echo "topicconfig: $((3 * n)) messages sent with none, gzip and lz4 to a zstd topic consumed back identically"

kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
trap - EXIT ERR
if [ "$rc" -ne 0 ]; then echo "topicconfig: chronik exited $rc after SIGTERM"; tail -n 50 "$work/serve.log"; exit 1; fi
