#!/usr/bin/env python3
"""A sink's contents as canonical JSON, read without pipectl or Spark, to compare engines.

    sink-snapshot.py delta PATH_OR_S3_URL
    sink-snapshot.py parquet PATH_OR_S3_URL      (every .parquet file under it)
    sink-snapshot.py postgres TABLE              (psql, PG* variables)
    sink-snapshot.py mysql TABLE                 (mysql client, MYSQL_* variables)
    sink-snapshot.py text PATH_OR_S3_URL         (CSV / JSON lines files: the lines as written)
    sink-snapshot.py avro PATH_OR_S3_URL         (fastavro)
    sink-snapshot.py kafka TOPIC                 (every record as key<TAB>value, kafka-python)
    sink-snapshot.py create-topic TOPIC

Prints {"columns": [[name, type], ...], "count": N, "rows": [sorted canonical rows]}. Delta
tables are read from their transaction log (JSON commits and Parquet checkpoints) with
pyarrow; floats keep 12 significant digits (sums may differ in the last bits by order).
S3 settings come from S3_ENDPOINT, S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""
import datetime
import decimal
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def local_setting(key):
    """A setting from the environment, else the repository's .env / .env.example."""
    if os.environ.get(key):
        return os.environ[key]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name in (".env", ".env.example"):
        try:
            with open(os.path.join(root, name)) as f:
                for line in f:
                    if line.startswith(key + "="):
                        return line.split("=", 1)[1].strip()
        except FileNotFoundError:
            continue
    return None


def filesystem(location):
    if location.startswith("s3://") or location.startswith("s3a://"):
        endpoint = os.environ.get("S3_ENDPOINT", "")
        fs = pafs.S3FileSystem(
            access_key=local_setting("AWS_ACCESS_KEY_ID"),
            secret_key=local_setting("AWS_SECRET_ACCESS_KEY"),
            region=os.environ.get("S3_REGION", "us-east-1"),
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme="https" if endpoint.startswith("https") else "http",
        )
        return fs, location.split("://", 1)[1].rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(location)


def canonical(value):
    if value is None:
        return None
    if isinstance(value, float):
        return float(format(value, ".12g"))
    if isinstance(value, decimal.Decimal):
        return str(value.normalize())
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def arrow_type(t):
    """The type as stored: a string view and a large string are both Parquet strings."""
    text = str(t)
    return {"string_view": "string", "large_string": "string", "binary_view": "binary", "large_binary": "binary"}.get(text, text)


def rows_of(table):
    names = table.column_names
    out = []
    for record in table.to_pylist():
        out.append(json.dumps([canonical(record[n]) for n in names], sort_keys=True))
    return sorted(out)


def delta(location):
    fs, root = filesystem(location)
    log = root + "/_delta_log"
    files = {}
    schema = None
    start = 0
    try:
        with fs.open_input_stream(log + "/_last_checkpoint") as f:
            version = json.loads(f.read())["version"]
        checkpoint = pq.read_table(f"{log}/{version:020d}.checkpoint.parquet", filesystem=fs).to_pylist()
        for action in checkpoint:
            if action.get("add"):
                files[action["add"]["path"]] = action["add"]
            if action.get("metaData"):
                schema = json.loads(action["metaData"]["schemaString"])
        start = version + 1
    except (FileNotFoundError, OSError):
        pass
    version = start
    while True:
        path = f"{log}/{version:020d}.json"
        try:
            with fs.open_input_stream(path) as f:
                lines = f.read().decode().splitlines()
        except (FileNotFoundError, OSError):
            break
        for line in lines:
            action = json.loads(line)
            if "add" in action:
                files[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                files.pop(action["remove"]["path"], None)
            elif "metaData" in action:
                schema = json.loads(action["metaData"]["schemaString"])
        version += 1
    if schema is None:
        sys.exit(f"no Delta table at {location}")
    columns = [[f["name"], f["type"] if isinstance(f["type"], str) else json.dumps(f["type"])] for f in schema["fields"]]
    names = [c[0] for c in columns]
    tables = []
    for path in sorted(files):
        t = pq.read_table(f"{root}/{path}", filesystem=fs)
        tables.append(t.select(names).cast(tables[0].schema) if tables else t.select(names))
    rows = []
    for t in tables:
        rows.extend(rows_of(t))
    return {"columns": columns, "count": len(rows), "rows": sorted(rows)}


def parquet(location):
    fs, root = filesystem(location)
    selector = pafs.FileSelector(root, recursive=True)
    paths = sorted(i.path for i in fs.get_file_info(selector) if i.path.endswith(".parquet"))
    rows, columns = [], None
    for p in paths:
        t = pq.read_table(p, filesystem=fs)
        columns = columns or [[f.name, arrow_type(f.type)] for f in t.schema]
        rows.extend(rows_of(t))
    return {"columns": columns or [], "count": len(rows), "rows": sorted(rows)}


def text(location):
    """CSV or JSON lines files: their lines as written (CSV header lines once, as columns)."""
    fs, root = filesystem(location)
    selector = pafs.FileSelector(root, recursive=True)
    paths = sorted(i.path for i in fs.get_file_info(selector)
                   if i.type == pafs.FileType.File and "/_" not in i.path[len(root):] and "/." not in i.path[len(root):])
    lines, header = [], None
    for p in paths:
        with fs.open_input_stream(p) as f:
            content = f.read().decode().splitlines()
        if p.endswith(".csv") and content:
            header = header or content[0]
            content = content[1:]
        lines.extend(l for l in content if l)
    return {"columns": [[c, "text"] for c in (header or "").split(",") if c], "count": len(lines), "rows": sorted(lines)}


def avro(location):
    import fastavro
    fs, root = filesystem(location)
    selector = pafs.FileSelector(root, recursive=True)
    paths = sorted(i.path for i in fs.get_file_info(selector) if i.path.endswith(".avro"))
    rows, columns = [], None
    def simple(t):
        if isinstance(t, list):
            t = [x for x in t if x != "null"][0]
        if isinstance(t, dict):
            return t.get("logicalType") or t.get("type")
        return t
    for p in paths:
        with fs.open_input_stream(p) as f:
            reader = fastavro.reader(f)
            if columns is None:
                columns = [[fld["name"], simple(fld["type"])] for fld in reader.writer_schema["fields"]]
            for record in reader:
                rows.append(json.dumps([canonical(record[c[0]]) for c in columns], sort_keys=True))
    return {"columns": columns or [], "count": len(rows), "rows": sorted(rows)}


def kafka(topic):
    """Every record of a topic as `key<TAB>value` text."""
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(topic, bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                             auto_offset_reset="earliest", consumer_timeout_ms=5000, enable_auto_commit=False)
    rows = sorted(f"{(m.key or b'').decode()}\t{(m.value or b'').decode()}" for m in consumer)
    consumer.close()
    return {"columns": [["key", "text"], ["value", "text"]], "count": len(rows), "rows": rows}


def create_topic(topic):
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    return {"created": topic}


def postgres(table):
    def psql(sql):
        return subprocess.run(["psql", "-XAtq", "-c", sql], check=True, capture_output=True, text=True).stdout
    columns = [line.split("|", 1) for line in psql(
        f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
    ).splitlines()]
    data = json.loads(psql(f"SELECT coalesce(json_agg(row_to_json(t)), '[]') FROM {table} t") or "[]")
    rows = sorted(json.dumps([canonical(r[c[0]]) for c in columns], sort_keys=True) for r in data)
    return {"columns": columns, "count": len(rows), "rows": rows}


def mysql(table):
    args = ["mysql", "-N", "-B", "--protocol=TCP", "-h", os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "-P", os.environ["MYSQL_PORT"], "-u", os.environ["MYSQL_USER"], os.environ["MYSQL_DATABASE"]]
    env = dict(os.environ, MYSQL_PWD=os.environ.get("MYSQL_PASSWORD", ""))
    def query(sql):
        return subprocess.run(args + ["-e", sql], check=True, capture_output=True, text=True, env=env).stdout
    columns = [line.split("\t", 1) for line in query(
        f"SELECT column_name, column_type FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = '{table}' ORDER BY ordinal_position"
    ).splitlines()]
    objects = ", ".join(f"'{c}', `{c}`" for c, _ in columns)
    data = [json.loads(line) for line in query(f"SELECT JSON_OBJECT({objects}) FROM `{table}`").splitlines()]
    rows = sorted(json.dumps([canonical(r[c[0]]) for c in columns], sort_keys=True) for r in data)
    return {"columns": columns, "count": len(rows), "rows": rows}


if __name__ == "__main__":
    kind, where = sys.argv[1], sys.argv[2]
    kinds = {"delta": delta, "parquet": parquet, "text": text, "avro": avro, "kafka": kafka,
             "create-topic": create_topic, "postgres": postgres, "mysql": mysql}
    print(json.dumps(kinds[kind](where)))
