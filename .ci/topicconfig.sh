#!/usr/bin/env bash
# Topic configs: a topic created by the kafkajs admin with
# compression.type=zstd (the broker recompresses what clients send
# uncompressed or with another codec); kcat produces to it with none, gzip
# and lz4 and consumes everything back. Then two compacted topics created
# by kafkajs (cleanup.policy=compact, compression.type zstd and gzip): kcat
# produces keyed records with lz4, overwriting every key many times and
# deleting some with tombstones (-Z); once the cleaner has run, kcat
# (librdkafka) reads exactly the latest record of every live key at its
# original offset from both, and kafkajs (no zstd codec) from the gzip one.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
port=${CHRONIK_CI_PORT:-19092}
broker=127.0.0.1:$port
go build -o "$work/chronik" .
"$work/chronik" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-format json \
  --segment-bytes 65536 --compaction-check-interval 100ms >"$work/serve.log" 2>&1 &
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

# Compaction: 40 keys written 25 times each (1 KiB values), then keys 0-4
# deleted; the expected result is every other key's last line, at the
# offset it was written to (offsets count from 0 in produce order). Two
# compacted topics: one stored as zstd (compression.type=zstd; kafkajs has
# no zstd codec, so kcat reads it) and one as gzip (kcat and kafkajs read it).
: >"$work/compact-in.txt"
for round in $(seq -w 1 25); do
  for k in $(seq -w 0 39); do
    echo "key-$k:value-$k-$round-$(head -c 1000 /dev/zero | tr '\0' 'z')" >>"$work/compact-in.txt"
  done
done
for k in $(seq -w 0 4); do echo "key-$k:" >>"$work/compact-in.txt"; done
echo "key-last:end" >>"$work/compact-in.txt"
last=$(($(wc -l <"$work/compact-in.txt") - 1))
awk -F: '{ off = NR - 1; val[$1] = $2; at[$1] = off } END { for (k in at) if (val[k] != "") print at[k], k, val[k] }' \
  "$work/compact-in.txt" | sort -n >"$work/compact-want.txt"
for codec in zstd gzip; do
  ctopic=compacted-$codec
  timeout 120 node .ci/kafkajs-compact.js "$broker" "$ctopic" create "$codec"
  kcat -b "$broker" -P -t "$ctopic" -K: -Z -z lz4 -X topic.request.required.acks=-1 -l "$work/compact-in.txt"
  for i in $(seq 1 300); do
    timeout 60 kcat -b "$broker" -C -t "$ctopic" -o beginning -e -q -f '%o %k %s\n' >"$work/compact-kcat.txt"
    if cmp -s "$work/compact-want.txt" "$work/compact-kcat.txt"; then break; fi
    sleep 0.2
  done
  if ! cmp -s "$work/compact-want.txt" "$work/compact-kcat.txt"; then
    echo "topicconfig: kcat reads $(wc -l <"$work/compact-kcat.txt") records of $ctopic, want the $(wc -l <"$work/compact-want.txt") latest per key"
    diff "$work/compact-want.txt" "$work/compact-kcat.txt" | head -20
    exit 1
  fi
  echo "topicconfig: $ctopic: $((last + 1)) records written (lz4, stored as $codec), kcat reads the $(wc -l <"$work/compact-want.txt") latest per key at their offsets"
done
timeout 120 node .ci/kafkajs-compact.js "$broker" compacted-gzip read "$last" >"$work/compact-kafkajs.txt"
if ! cmp -s "$work/compact-want.txt" "$work/compact-kafkajs.txt"; then
  echo "topicconfig: kafkajs reads compacted-gzip differently"
  diff "$work/compact-want.txt" "$work/compact-kafkajs.txt" | head -20
  exit 1
fi
grep -q '"message":"compacted"' "$work/serve.log"
echo "topicconfig: kafkajs reads the same from compacted-gzip"

kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
trap - EXIT ERR
if [ "$rc" -ne 0 ]; then echo "topicconfig: chronik exited $rc after SIGTERM"; tail -n 50 "$work/serve.log"; exit 1; fi
