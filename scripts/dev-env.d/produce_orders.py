"""Produces generated order events (JSON) to a Kafka topic, for the streaming tests and
`scripts/bench-stream`: `produce_orders.py BOOTSTRAP TOPIC --count N [--first ID] [--rate EV_PER_S]
[--partitions P]`. Creates the topic with P partitions when it does not exist. Each event has a
unique `order_id` (first, first+1, ...), so a reader can check that every event arrived exactly
once. Prints `produced N` when every record is acknowledged."""
import argparse
import json
import time

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

STATUSES = ["paid", "paid", "paid", "pending", "refunded", "cancelled"]


def event(i):
    return {
        "order_id": i,
        "customer_id": None if i % 97 == 0 else 1 + (i * 2654435761) % 1000,
        "status": STATUSES[(i * 31) % 6],
        "amount": round(((i * 48271) % 100000) / 100.0 + 1, 2),
        "event_time": 1_735_689_600_000_000 + i * 13_000_000,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--rate", type=float, default=0, help="events per second (0: as fast as possible)")
    p.add_argument("--partitions", type=int, default=4)
    a = p.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap)
    try:
        admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    admin.close()
    producer = KafkaProducer(bootstrap_servers=a.bootstrap, linger_ms=5, batch_size=512 * 1024, acks=1)
    start = time.monotonic()
    tick = 1000
    for n in range(a.count):
        i = a.first + n
        producer.send(a.topic, key=str(i).encode(), value=json.dumps(event(i)).encode())
        if a.rate > 0 and n % tick == tick - 1:
            ahead = (n + 1) / a.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    producer.close()
    print(f"produced {a.count}", flush=True)


if __name__ == "__main__":
    main()
