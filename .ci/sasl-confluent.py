"""librdkafka (python3-confluent-kafka) over SASL_SSL with SCRAM-SHA-512 for
.ci/security.sh: produces 50 records ("python-NNN") to TOPIC and consumes
them back. Usage: sasl-confluent.py BROKER CA_FILE USER PASSWORD TOPIC"""
import sys
import time

from confluent_kafka import Consumer, Producer

broker, ca, user, password, topic = sys.argv[1:6]
common = {
    "bootstrap.servers": broker,
    "security.protocol": "SASL_SSL",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": user,
    "sasl.password": password,
    "ssl.ca.location": ca,
}
errors = []
p = Producer(dict(common))
for i in range(1, 51):
    p.produce(topic, value=b"python-%03d" % i, on_delivery=lambda err, msg: err and errors.append(err))
if p.flush(60) != 0 or errors:
    sys.exit("produce failed: %s" % (errors or "not flushed"))

c = Consumer(dict(common, **{"group.id": "ci-python-sasl", "auto.offset.reset": "earliest"}))
c.subscribe([topic])
seen = set()
deadline = time.time() + 60
while len(seen) < 50 and time.time() < deadline:
    m = c.poll(1.0)
    if m is None:
        continue
    if m.error():
        sys.exit("consume: %s" % m.error())
    seen.add(m.value())
c.close()
if len(seen) != 50:
    sys.exit("consumed %d of 50 records" % len(seen))
print("security: librdkafka %s: 50 records produced and consumed over SASL_SSL with SCRAM-SHA-512" % __import__("confluent_kafka").libversion()[0])
