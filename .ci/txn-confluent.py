"""librdkafka transactions (python3-confluent-kafka) for .ci/txn.sh: one
transaction of 50 records ("commit-NNN") committed, one of 50 ("abort-NNN")
aborted, and one of 20 ("timeout-NNN") left open past its
transaction.timeout.ms: the coordinator aborts it, so its commit must fail.
Usage: python3 txn-confluent.py BROKER TOPIC"""
import sys
import time

from confluent_kafka import KafkaException, Producer

broker, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": broker, "transactional.id": "ci-python"})
p.init_transactions(30)
for prefix, n, commit in (("commit", 50, True), ("abort", 50, False)):
    p.begin_transaction()
    for i in range(1, n + 1):
        p.produce(topic, value=f"{prefix}-{i:03d}".encode())
    p.flush(30)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)

slow = Producer({"bootstrap.servers": broker, "transactional.id": "ci-python-slow",
                 "transaction.timeout.ms": 2000, "message.timeout.ms": 2000})
slow.init_transactions(30)
slow.begin_transaction()
for i in range(1, 21):
    slow.produce(topic, value=f"timeout-{i:03d}".encode())
slow.flush(30)
time.sleep(5)  # past the transaction timeout: the coordinator aborts
try:
    slow.commit_transaction(30)
except KafkaException as e:
    print("confluent-kafka: the timed-out transaction's commit failed as it must:", e)
else:
    sys.exit("confluent-kafka: a transaction past its timeout committed")
print("confluent-kafka: committed one transaction, aborted one, one aborted at its timeout")
