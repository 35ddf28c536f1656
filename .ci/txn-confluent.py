"""librdkafka transactions (python3-confluent-kafka) for .ci/txn.sh: one
transaction of 50 records ("commit-NNN") committed, one of 50
("abort-NNN") aborted. Usage: python3 txn-confluent.py BROKER TOPIC"""
import sys

from confluent_kafka import Producer

broker, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": broker, "transactional.id": "ci-python"})
p.init_transactions(30)
for prefix, commit in (("commit", True), ("abort", False)):
    p.begin_transaction()
    for i in range(1, 51):
        p.produce(topic, value=f"{prefix}-{i:03d}".encode())
    p.flush(30)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)
print("confluent-kafka: committed one transaction, aborted one")
