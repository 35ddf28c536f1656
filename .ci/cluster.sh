#!/usr/bin/env bash
# Cluster interop: three `chronik serve` processes with --peers on
# 127.0.0.1, peers over mutual TLS with certificates from `chronik cluster
# certs`, driven by kcat (librdkafka) and kafkajs. An RF=3 topic takes
# 20,000 idempotent acks=all messages from kcat in two halves; between them
# the leader of partition 0 is SIGKILLed. Every message is consumed back
# exactly once by kcat (through the survivors, then through the restarted
# node as well), and a kafkajs group consumer running across the kill sees
# every message. Needs kcat, curl, node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v curl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq curl >/dev/null
fi
work=$(mktemp -d)
base=${CHRONIK_CI_CLUSTER_PORT:-19200}
go build -o "$work/chronik" .

kafka() { echo "127.0.0.1:$((base + $1))"; }      # node n's Kafka listener
raft() { echo "127.0.0.1:$((base + 10 + $1))"; }  # node n's raft listener
admin() { echo "127.0.0.1:$((base + 20 + $1))"; } # node n's /readyz
peers="1=$(raft 1),2=$(raft 2),3=$(raft 3)"
certs="$work/certs"
"$work/chronik" cluster certs --out "$certs" --nodes 1,2,3 --hosts "$peers" >/dev/null
# Peers without TLS (and without --peer-insecure-plaintext) refuse to start.
if "$work/chronik" serve --node-id 1 --peers "$peers" --data-dir "$work/refused" >"$work/refused.txt" 2>&1; then
  echo "cluster: --peers without peer TLS started"; exit 1
fi
grep -q "cluster mode needs peer TLS" "$work/refused.txt"
declare -A pids
start() {
  local n=$1
  "$work/chronik" serve --node-id "$n" --peers "$peers" --listen "$(kafka "$n")" \
    --peer-tls-cert-file "$certs/node-$n.pem" --peer-tls-key-file "$certs/node-$n-key.pem" \
    --peer-tls-ca-file "$certs/ca.pem" \
    --admin-listen "$(admin "$n")" --data-dir "$work/node$n" --log-format json \
    >>"$work/node$n.log" 2>&1 &
  pids[$n]=$!
}
ready() {
  for _ in $(seq 1 300); do
    if curl -fsS "http://$(admin "$1")/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "cluster: node $1 not ready after 30 s"; return 1
}
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'cleanup; for n in 1 2 3; do echo "--- node $n log (tail)"; tail -n 30 "$work/node$n.log"; done' ERR
trap cleanup EXIT

for n in 1 2 3; do start "$n"; done
for n in 1 2 3; do ready "$n"; done
all="$(kafka 1),$(kafka 2),$(kafka 3)"
# Ready means a controller leader; RF 3 also needs all three registered.
for i in $(seq 1 300); do
  if "$work/chronik" topic create ci --partitions 3 --replication-factor 3 --brokers "$all" >"$work/create.txt" 2>&1 ||
    grep -q TOPIC_ALREADY_EXISTS "$work/create.txt"; then break; fi
  if [ "$i" = 300 ]; then cat "$work/create.txt"; exit 1; fi
  sleep 0.1
done

# The leader of partition 0, from kcat's metadata.
leader() {
  kcat -b "$1" -L -t ci | sed -n 's/.*partition 0, leader \([0-9-]*\),.*/\1/p' | head -1
}
for _ in $(seq 1 100); do
  lead=$(leader "$all" 2>/dev/null || true)
  if [ -n "$lead" ] && [ "$lead" -ge 1 ]; then break; fi
  sleep 0.1
done
echo "cluster: partition 0 led by node $lead"

n=10000
pad=$(head -c 100 /dev/zero | tr '\0' 'x')
seq -f "first-%05g $pad" 1 $n >"$work/in1.txt"
seq -f "second-%05g $pad" 1 $n >"$work/in2.txt"
produce() {
  kcat -b "$1" -P -t ci -K: -X enable.idempotence=true -X topic.request.required.acks=-1 \
    -X message.timeout.ms=120000 -l "$2"
}
# Keyed by line number, so every partition takes some.
awk '{print NR ":" $0}' "$work/in1.txt" >"$work/keyed1.txt"
awk '{print NR ":" $0}' "$work/in2.txt" >"$work/keyed2.txt"
produce "$all" "$work/keyed1.txt"
echo "cluster: $n messages produced (acks=all, idempotent)"

# A kafkajs group consumer reads everything while the leader dies (its
# group's coordinator may be on that node too).
npm_dir="$work/npm"
mkdir -p "$npm_dir"
(cd "$npm_dir" && timeout 180 npm install --no-audit --no-fund --loglevel=error kafkajs@2 >/dev/null)
NODE_PATH="$npm_dir/node_modules" node .ci/kafkajs-consumer.js "$all" ci-group ci >"$work/kafkajs.txt" 2>"$work/kafkajs.err" &
jspid=$!

kill -KILL "${pids[$lead]}"
wait "${pids[$lead]}" 2>/dev/null || true
unset "pids[$lead]"
survivors=""
for k in 1 2 3; do [ "$k" = "$lead" ] || survivors="$survivors${survivors:+,}$(kafka "$k")"; done
echo "cluster: node $lead SIGKILLed"
produce "$survivors" "$work/keyed2.txt"
echo "cluster: $n more messages produced through the survivors"

consume() {
  timeout 120 kcat -b "$1" -C -t ci -o beginning -c $((2 * n)) -e -q -f '%s\n' | sort
}
sort "$work/in1.txt" "$work/in2.txt" >"$work/want.txt"
consume "$survivors" >"$work/got.txt"
if ! cmp -s "$work/want.txt" "$work/got.txt"; then
  echo "cluster: consumed $(wc -l <"$work/got.txt") lines through the survivors, want every one of $((2 * n)) exactly once"
  diff "$work/want.txt" "$work/got.txt" | head -5
  exit 1
fi
echo "cluster: all $((2 * n)) messages consumed back exactly once through the survivors"

for _ in $(seq 1 1200); do
  if [ "$(cut -d' ' -f3- "$work/kafkajs.txt" | sort -u | wc -l)" -ge $((2 * n)) ]; then break; fi
  sleep 0.1
done
kill -TERM "$jspid"; wait "$jspid" || true
cut -d' ' -f3- "$work/kafkajs.txt" | sort -u >"$work/js-got.txt"
if ! cmp -s "$work/want.txt" "$work/js-got.txt"; then
  echo "cluster: the kafkajs group consumer saw $(wc -l <"$work/js-got.txt") distinct messages, want $((2 * n))"
  tail -5 "$work/kafkajs.err"
  exit 1
fi
echo "cluster: a kafkajs group consumer saw all $((2 * n)) messages across the kill ($(wc -l <"$work/kafkajs.txt") deliveries)"

start "$lead"
ready "$lead"
echo "cluster: node $lead restarted and ready"
consume "$all" >"$work/got2.txt"
if ! cmp -s "$work/want.txt" "$work/got2.txt"; then
  echo "cluster: after node $lead restarted, consumed $(wc -l <"$work/got2.txt") lines"
  exit 1
fi
echo "cluster: node $lead restarted; all messages consumed again with it back"

for k in 1 2 3; do kill -TERM "${pids[$k]}"; done
rc=0
for k in 1 2 3; do wait "${pids[$k]}" || rc=$?; done
pids=()
trap - EXIT ERR
if [ "$rc" -ne 0 ]; then echo "cluster: a node exited $rc after SIGTERM"; exit 1; fi
echo "cluster: clean exit of all three nodes after SIGTERM"
