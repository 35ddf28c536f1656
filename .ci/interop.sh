#!/usr/bin/env bash
# Interop: a freshly started `chronik serve` driven by kcat (librdkafka).
# 10,000 messages per codec produced and consumed back and compared, then
# `kcat -L`, then SIGTERM and a clean exit.
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

n=10000
seq -f "message-%05g $(head -c 200 /dev/zero | tr '\0' 'x')" 1 $n >"$work/in.txt"
for codec in none gzip snappy lz4 zstd; do
  topic="interop-$codec"
  kcat -b "$broker" -P -t "$topic" -z "$codec" -X topic.request.required.acks=-1 -l "$work/in.txt"
  timeout 60 kcat -b "$broker" -C -t "$topic" -o beginning -c $n -e -q >"$work/out-$codec.txt"
  if ! cmp -s "$work/in.txt" "$work/out-$codec.txt"; then
    echo "interop: $codec: consumed data differs from produced ($(wc -l <"$work/out-$codec.txt") lines)"
    exit 1
  fi
  echo "interop: $codec: $n messages produced and consumed back identically"
done

kcat -b "$broker" -L | tee "$work/metadata.txt"
for codec in none gzip snappy lz4 zstd; do
  grep -q "topic \"interop-$codec\" with 1 partitions" "$work/metadata.txt"
done

kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
trap - EXIT ERR
if [ "$rc" -ne 0 ]; then echo "interop: chronik exited $rc after SIGTERM"; tail -n 50 "$work/serve.log"; exit 1; fi
echo "interop: clean exit after SIGTERM"
