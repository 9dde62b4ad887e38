"""Deterministic mocked events and objects for the local environment (no downloads):
Kafka topics `orders_json` (JSON) and `orders_avro` (Avro binary datums, schema in
configs/examples/schemas/order_event.avsc), and S3 objects under `raw/` in Parquet, CSV and Avro.
Reads its settings from the environment that scripts/dev-env loads from .env."""
import csv
import io
import json
import os
import pathlib

import boto3
import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from produce_orders import event  # the one definition of a generated order event

ROOT = pathlib.Path(__file__).resolve().parents[2]
N_EVENTS = int(os.environ.get("SEED_EVENTS", "10000"))
SCHEMA = fastavro.parse_schema(json.loads((ROOT / "configs/examples/schemas/order_event.avsc").read_text()))


def seed_sql():
    """Compose only: the tables, over the databases' own protocols (natively, psql and mariadb run the
    same SQL files)."""
    import psycopg
    import pymysql

    n = int(os.environ.get("SEED_ORDERS", "100000"))
    fill = {"orders": n, "customers": max(n // 10, 1)}
    sql_dir = ROOT / "scripts/dev-env.d/sql"
    pg = (sql_dir / "postgres.sql").read_text().format(**fill)
    with psycopg.connect(host=os.environ["SEED_HOST_POSTGRES"], dbname=os.environ["POSTGRES_DB"],
                         user=os.environ["POSTGRES_USER"], password=os.environ["POSTGRES_PASSWORD"]) as conn:
        conn.execute(pg)
    my = (sql_dir / "mysql.sql").read_text().format(**fill)
    conn = pymysql.connect(host=os.environ["SEED_HOST_MYSQL"], database=os.environ["MYSQL_DATABASE"],
                           user=os.environ["MYSQL_USER"], password=os.environ["MYSQL_PASSWORD"],
                           client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    with conn.cursor() as cur:
        cur.execute(my)
    conn.commit()
    print(f"sql: customers, orders, order_items ({n} orders)")


def seed_kafka():
    bootstrap = os.environ.get("SEED_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ['KAFKA_PORT']}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    existing = set(admin.list_topics())
    stale = [t for t in ("orders_json", "orders_avro") if t in existing]
    if stale:
        admin.delete_topics(stale)
        import time
        time.sleep(2)
    admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in ("orders_json", "orders_avro")])
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for i in range(1, N_EVENTS + 1):
        e = event(i)
        key = str(i).encode()
        producer.send("orders_json", key=key, value=json.dumps(e).encode())
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, SCHEMA, e)
        producer.send("orders_avro", key=key, value=buf.getvalue())
    producer.flush()
    print(f"kafka: {N_EVENTS} events to orders_json and orders_avro")


def seed_s3():
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ.get("SEED_S3_ENDPOINT", f"http://127.0.0.1:{os.environ['S3_PORT']}"),
        region_name=os.environ["S3_REGION"],
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = os.environ["S3_BUCKET"]
    rows = [event(i) for i in range(1, 1001)]
    table = pa.Table.from_pylist(rows)
    for part in range(2):
        buf = io.BytesIO()
        pq.write_table(table.slice(part * 500, 500), buf)
        s3.put_object(Bucket=bucket, Key=f"raw/orders/part-{part}.parquet", Body=buf.getvalue())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    s3.put_object(Bucket=bucket, Key="raw/orders.csv", Body=text.getvalue().encode())
    buf = io.BytesIO()
    fastavro.writer(buf, SCHEMA, rows)
    s3.put_object(Bucket=bucket, Key="raw/orders.avro", Body=buf.getvalue())
    print(f"s3: raw/orders/part-0..1.parquet, raw/orders.csv, raw/orders.avro in {bucket}")


if __name__ == "__main__":
    import sys
    if "--with-sql" in sys.argv:
        seed_sql()
    seed_kafka()
    seed_s3()
