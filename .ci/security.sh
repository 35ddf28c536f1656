#!/usr/bin/env bash
# Security interop: `chronik serve` with a PLAINTEXT listener and a SASL_SSL
# listener (certificates made here with openssl, SCRAM-SHA-512 only).
#   1. The first user is created through the admin listener (`chronik user
#      create --password-stdin`), as with SASL on there is no other way in.
#   2. kcat, kafkajs (npm) and librdkafka through python3-confluent-kafka
#      (apt) each produce and consume over SASL_SSL with SCRAM-SHA-512.
#   3. A wrong password, an unknown mechanism (PLAIN, not enabled) and a
#      plaintext client on the TLS listener each fail cleanly: the client
#      gets an error, the broker logs why, and /readyz stays 200.
# Every wait is bounded.
set -eEuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
plain=127.0.0.1:${CHRONIK_CI_SEC_PORT:-19096}
secure=127.0.0.1:${CHRONIK_CI_SEC_TLS_PORT:-19097}
admin=127.0.0.1:${CHRONIK_CI_SEC_ADMIN_PORT:-19645}
go build -o "$work/chronik" .

# A CA and a server certificate for 127.0.0.1 (ECDSA P-256).
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca-key.pem"
openssl req -x509 -new -key "$work/ca-key.pem" -subj "/CN=chronik CI CA" -days 2 -out "$work/ca.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/server-key.pem"
openssl req -new -key "$work/server-key.pem" -subj "/CN=chronik" -out "$work/server.csr"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null

"$work/chronik" serve --listeners "PLAINTEXT://$plain,SASL_SSL://$secure" --admin-listen "$admin" \
  --tls-cert-file "$work/server.pem" --tls-key-file "$work/server-key.pem" --sasl-mechanisms SCRAM-SHA-512 \
  --data-dir "$work/data" --log-format json >>"$work/serve.log" 2>&1 &
pid=$!
cleanup() {
  jobs -p | xargs -r kill -KILL 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap 'echo "--- serve log (tail)"; tail -n 40 "$work/serve.log"; for f in "$work"/*.err; do echo "--- $f"; tail -n 20 "$f"; done' ERR
trap cleanup EXIT
for _ in $(seq 1 100); do
  if curl -sf "http://$admin/readyz" >/dev/null; then break; fi
  sleep 0.1
done
ready() {
  if ! curl -sf "http://$admin/readyz" >/dev/null; then echo "security: broker not ready after $1"; exit 1; fi
}
logged() {
  local deadline=$((SECONDS + 20))
  until grep -q "$1" "$work/serve.log"; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "security: the broker did not log \"$1\" for $2"; exit 1; fi
    sleep 0.2
  done
}

# 1. The first user, through the admin listener.
printf 'ci-secret\n' | "$work/chronik" user create ci --password-stdin --mechanism SCRAM-SHA-512 --admin-url "http://$admin"
"$work/chronik" user list --admin-url "http://$admin"
"$work/chronik" topic create sec-kcat --brokers "$plain" >/dev/null
"$work/chronik" topic create sec-kafkajs --brokers "$plain" >/dev/null
"$work/chronik" topic create sec-python --brokers "$plain" >/dev/null

sasl=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=ci -X ssl.ca.location="$work/ca.pem")

# 2a. kcat.
seq -f "kcat-%03g" 1 50 | timeout 60 kcat -b "$secure" "${sasl[@]}" -X sasl.password=ci-secret -P -t sec-kcat 2>"$work/kcat-produce.err"
got=$(timeout 60 kcat -b "$secure" "${sasl[@]}" -X sasl.password=ci-secret -C -t sec-kcat -o beginning -e -q -f '%s\n' 2>"$work/kcat-consume.err" | grep -c '^kcat-')
if [ "$got" -ne 50 ]; then echo "security: kcat consumed $got of 50 records over SASL_SSL"; exit 1; fi
echo "security: kcat: 50 records produced and consumed over SASL_SSL with SCRAM-SHA-512"

# 2b. kafkajs (npm).
npm_dir="$work/npm"
mkdir -p "$npm_dir"
(cd "$npm_dir" && timeout 180 npm install --no-audit --no-fund --loglevel=error kafkajs@2 >/dev/null)
export NODE_PATH="$npm_dir/node_modules"
timeout 120 node .ci/kafkajs-sasl.js "$secure" "$work/ca.pem" ci ci-secret sec-kafkajs >"$work/kafkajs.out" 2>"$work/kafkajs.err"
cat "$work/kafkajs.out"

# 2c. librdkafka via python3-confluent-kafka (apt).
if ! /usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-confluent-kafka >/dev/null
fi
timeout 120 /usr/bin/python3 .ci/sasl-confluent.py "$secure" "$work/ca.pem" ci ci-secret sec-python >"$work/python.out" 2>"$work/python.err"
cat "$work/python.out"

# 3. Failures: each client gets an error, the broker says why and stays up.
# -m 5: kcat's metadata wait; a failing client never gets metadata.
if timeout 30 kcat -b "$secure" "${sasl[@]}" -X sasl.password=wrong -L -m 5 >"$work/wrong.out" 2>"$work/wrong.err"; then
  echo "security: kcat with a wrong password got metadata"; exit 1
fi
logged "SASL authentication failed" "the wrong password"
ready "a wrong password"
echo "security: a wrong password fails ($(grep -o 'Authentication failed[^"]*' "$work/wrong.err" | head -1))"

if timeout 30 kcat -b "$secure" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN -X sasl.username=ci \
    -X sasl.password=ci-secret -X ssl.ca.location="$work/ca.pem" -L -m 5 >"$work/mech.out" 2>"$work/mech.err"; then
  echo "security: kcat with an unknown mechanism got metadata"; exit 1
fi
logged "unsupported SASL mechanism" "the unknown mechanism"
ready "an unknown mechanism"
echo "security: an unknown mechanism (PLAIN) fails"

if timeout 30 kcat -b "$secure" -X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=ci \
    -X sasl.password=ci-secret -L -m 5 >"$work/plain.out" 2>"$work/plain.err"; then
  echo "security: a plaintext kcat got metadata from the TLS listener"; exit 1
fi
logged "TLS handshake failed" "the plaintext client"
ready "a plaintext client on the TLS listener"
echo "security: a plaintext client on the TLS listener fails"

# The broker still serves the right password.
timeout 60 kcat -b "$secure" "${sasl[@]}" -X sasl.password=ci-secret -L -m 10 >/dev/null 2>"$work/after.err"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" -ne 0 ]; then echo "security: chronik exited $rc after SIGTERM"; exit 1; fi
trap - ERR
echo "security: clean exit after SIGTERM"
