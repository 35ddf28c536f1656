#!/usr/bin/env bash
# Interop: transactions of clients nobody here wrote, against `chronik
# serve`, each checked with a read_committed consumer (kcat):
#   1. kcat (librdkafka) -X transactional.id: one transaction committed at
#      end of input;
#   2. kafkajs producer.transaction(): one committed with sendOffsets (the
#      group's offset becomes visible), one aborted;
#   3. librdkafka through python3-confluent-kafka (apt): one committed, one
#      aborted, and one left open past its transaction.timeout.ms, which the
#      coordinator aborts (the producer's commit then fails).
# A read_committed consumer must see every committed record exactly once
# and none of the aborted ones. Every wait is bounded.
set -eEuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
port=${CHRONIK_CI_TXN_PORT:-19095}
broker=127.0.0.1:$port
go build -o "$work/chronik" .

"$work/chronik" serve --listen "$broker" --data-dir "$work/data" --log-format json \
  --default-partitions 3 >>"$work/serve.log" 2>&1 &
pid=$!
cleanup() {
  jobs -p | xargs -r kill -KILL 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap 'echo "--- serve log (tail)"; tail -n 40 "$work/serve.log"; for f in "$work"/*.err; do echo "--- $f"; tail -n 20 "$f"; done' ERR
trap cleanup EXIT
for _ in $(seq 1 100); do
  if kcat -b "$broker" -L -m 2 >/dev/null 2>&1; then break; fi
  sleep 0.1
done

# committed TOPIC N PREFIX: a read_committed consumer sees exactly N
# records, all starting with PREFIX (retried for 60s while markers land).
committed() {
  local topic=$1 want=$2 prefix=$3 deadline=$((SECONDS + 60)) got
  while true; do
    timeout 30 kcat -b "$broker" -C -t "$topic" -o beginning -e -q -X isolation.level=read_committed \
      -f '%s\n' >"$work/$topic.read" 2>"$work/$topic.read.err" || true
    got=$(wc -l <"$work/$topic.read")
    if grep -qv "^$prefix" "$work/$topic.read"; then
      echo "txn: $topic: read_committed saw a record of an aborted transaction: $(grep -v "^$prefix" "$work/$topic.read" | head -1)"
      return 1
    fi
    if [ "$got" -eq "$want" ] && [ "$(sort -u "$work/$topic.read" | wc -l)" -eq "$want" ]; then return 0; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "txn: $topic: read_committed saw $got records, want $want distinct"
      return 1
    fi
    sleep 0.5
  done
}
# uncommitted TOPIC N: read_uncommitted sees N records (aborted included).
uncommitted() {
  local got
  got=$(timeout 30 kcat -b "$broker" -C -t "$1" -o beginning -e -q -X isolation.level=read_uncommitted -f '%s\n' | wc -l)
  if [ "$got" -ne "$2" ]; then echo "txn: $1: read_uncommitted saw $got records, want $2"; return 1; fi
}

# 1. kcat: one transaction, committed at end of input (kcat has no abort;
#    librdkafka's abort and timeout are checked in 3).
"$work/chronik" topic create txn-kcat --partitions 3 --brokers "$broker" >/dev/null
seq -f "commit-%03g" 1 50 | timeout 60 kcat -b "$broker" -P -t txn-kcat -X transactional.id=ci-kcat 2>"$work/kcat.err"
committed txn-kcat 50 commit-
echo "txn: kcat: a transaction of 50 records committed and visible to read_committed"

# 2. kafkajs (npm).
npm_dir="$work/npm"
mkdir -p "$npm_dir"
(cd "$npm_dir" && timeout 180 npm install --no-audit --no-fund --loglevel=error kafkajs@2 >/dev/null)
export NODE_PATH="$npm_dir/node_modules"
"$work/chronik" topic create txn-kafkajs --partitions 3 --brokers "$broker" >/dev/null
"$work/chronik" topic create txn-kafkajs-in --partitions 1 --brokers "$broker" >/dev/null
seq -f "in-%03g" 1 10 | timeout 60 kcat -b "$broker" -P -t txn-kafkajs-in -p 0
timeout 120 node .ci/kafkajs-txn.js "$broker" txn-kafkajs txn-kafkajs-in ci-kafkajs-group >"$work/kafkajs.out" 2>"$work/kafkajs.err"
committed txn-kafkajs 50 commit-
uncommitted txn-kafkajs 100
offsets=$("$work/chronik" group describe ci-kafkajs-group --brokers "$broker" --format json)
if ! echo "$offsets" | grep -q '"committed_offset": *7'; then
  echo "txn: kafkajs: the group's offset sent with the committed transaction (7) is not visible: $offsets"
  exit 1
fi
echo "txn: kafkajs $(node -p 'require("kafkajs/package.json").version'): committed with sendOffsets (group offset 7 visible), aborted one invisible"

# 3. librdkafka via python3-confluent-kafka (apt).
if ! /usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-confluent-kafka >/dev/null
fi
"$work/chronik" topic create txn-python --partitions 3 --brokers "$broker" >/dev/null
timeout 120 /usr/bin/python3 .ci/txn-confluent.py "$broker" txn-python >"$work/python.out" 2>"$work/python.err"
committed txn-python 50 commit-
uncommitted txn-python 120
echo "txn: confluent-kafka-python $(/usr/bin/python3 -c 'import confluent_kafka as c; print(c.version()[0], "librdkafka", c.libversion()[0])'): one committed, one aborted, one aborted at its timeout"

"$work/chronik" txn list --brokers "$broker"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" -ne 0 ]; then echo "txn: chronik exited $rc after SIGTERM"; exit 1; fi
trap - ERR
echo "txn: clean exit after SIGTERM"
