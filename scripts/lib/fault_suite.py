"""Fault-injection cases for scripts/fault-suite: each breaks a real local service while
pipectl runs and checks exit code, message and the data read back (pyarrow, boto3, psql,
mysql: clients pipectl did not write)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import pyarrow.dataset as ds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ["PIPECTL_BIN"]
ENV = dict(os.environ)
ENV.pop("RUST_LOG", None)


def vault_secret(path):
    req = urllib.request.Request(
        f"{ENV['VAULT_ADDR']}/v1/{ENV.get('VAULT_KV_MOUNT', 'secret')}/{path}",
        headers={"X-Vault-Token": ENV["VAULT_TOKEN"]},
    )
    body = json.load(urllib.request.urlopen(req))["data"]
    return body.get("data", body) if "metadata" in body else body


PG = vault_secret("pipectl/postgres")
MY = vault_secret("pipectl/mysql")
S3 = vault_secret("pipectl/s3")


def psql(sql):
    env = dict(ENV, PGPASSWORD=PG["password"])
    out = subprocess.run(
        ["psql", "-XAtq", "-h", PG["host"], "-p", PG["port"], "-U", PG["username"], "-d", PG["database"], "-c", sql],
        env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def mysql(sql):
    env = dict(ENV, MYSQL_PWD=MY["password"])
    out = subprocess.run(
        ["mysql", "--protocol=tcp", "-h", MY["host"], "-P", MY["port"], "-u", MY["username"], "-N", "-B", MY["database"], "-e", sql],
        env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def dev_env(*args):
    subprocess.run([os.path.join(ROOT, "scripts/dev-env"), *args], check=True, capture_output=True)


def s3():
    return boto3.client("s3", endpoint_url=S3["endpoint"], region_name=S3["region"],
                        aws_access_key_id=S3["access_key_id"], aws_secret_access_key=S3["secret_access_key"])


def pipeline(dir_, name, steps, connections=None, retry=None):
    doc = {"name": name, "retry": retry or {"max_retries": 3, "delay_seconds": 2}, "steps": steps}
    if connections:
        doc["connections"] = connections
    path = os.path.join(dir_, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


CONN = {
    "pg": {"system": "postgres", "tls_mode": "disable", "credentials": {"vault_path": "secret/pipectl/postgres"}},
    "my": {"system": "mysql", "tls_mode": "disable", "credentials": {"vault_path": "secret/pipectl/mysql"}},
    "kafka": {"system": "kafka", "credentials": {"vault_path": "secret/pipectl/kafka"}},
    "lake": {"system": "s3", "bucket": ENV["S3_BUCKET"], "credentials": {"vault_path": "secret/pipectl/s3"}},
}


def start(path, *extra):
    return subprocess.Popen([BIN, "run", path, "--no-progress", *extra], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=180):
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_for(check, seconds=60, every=0.05):
    end = time.time() + seconds
    while time.time() < end:
        got = check()
        if got:
            return got
        time.sleep(every)
    return None


def parquet_rows(path):
    d = ds.dataset(path, format="parquet")
    t = d.to_table(columns=["id"])
    ids = t.column("id").to_pylist()
    return len(ids), len(set(ids))


# --- cases --------------------------------------------------------------------------------

def extract_killed(tmp, name, method, conn, table, find, kill, drop):
    """A 1,000,000-row extract whose server connection is killed mid-read: retried, and the
    Parquet written holds every row once."""
    out = os.path.join(tmp, f"{name}_out")
    p = pipeline(tmp, name, [
        {"name": "rows", "kind": "extract", "method": method, "connection": conn, "options": {"table": table}},
        {"name": "files", "kind": "load", "method": "s3", "options": {"path": out, "format": "parquet"}}],
        {conn: CONN[conn]})
    report = os.path.join(tmp, f"{name}_report.json")
    proc = start(p, "--report", report)
    victim = wait_for(find)
    if victim:
        kill(victim)
    code, err = finish(proc)
    attempts = json.load(open(report))["attempts"] if os.path.exists(report) else 0
    rows = parquet_rows(out) if code == 0 else (0, 0)
    drop()
    ok = bool(victim) and code == 0 and attempts >= 2 and rows == (1000000, 1000000)
    return ok, f"exit {code}, {attempts} attempts, {rows[0]:,} rows ({rows[1]:,} distinct)" + ("" if victim else ", never saw the read")


def pg_backend_terminated(tmp):
    psql("DROP TABLE IF EXISTS fault_pg; CREATE TABLE fault_pg AS SELECT g AS id, md5(g::text) AS note, g * 0.5 AS x FROM generate_series(1, 1000000) g")
    return extract_killed(
        tmp, "fault_pg", "postgres", "pg", "fault_pg",
        lambda: psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'pipectl' AND query LIKE 'COPY%' LIMIT 1"),
        lambda pid: psql(f"SELECT pg_terminate_backend({pid})"),
        lambda: psql("DROP TABLE IF EXISTS fault_pg"))


def mysql_connection_killed(tmp):
    d = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
    mysql(f"DROP TABLE IF EXISTS fault_my; CREATE TABLE fault_my (id BIGINT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB; "
          f"INSERT INTO fault_my SELECT 1 + a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d, MD5(a.d) FROM {d} a, {d} b, {d} c, {d} e, {d} f, {d} g")
    return extract_killed(
        tmp, "fault_my", "mysql", "my", "fault_my",
        lambda: mysql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT * FROM `fault_my`%' LIMIT 1"),
        lambda conn_id: mysql(f"KILL {conn_id}"),
        lambda: mysql("DROP TABLE IF EXISTS fault_my"))


def pg_restarted_during_load(tmp):
    psql("DROP TABLE IF EXISTS fault_load; CREATE TABLE fault_load (id bigint PRIMARY KEY, customer_id bigint, amount double precision)")
    p = pipeline(tmp, "fault_load", [
        {"name": "rows", "kind": "extract", "method": "generate", "options": {"rows": 2000000}},
        {"name": "few", "kind": "transform", "method": "select", "options": {"columns": ["order_id", "customer_id", "amount"]}},
        {"name": "named", "kind": "transform", "method": "rename", "options": {"columns": {"order_id": "id"}}},
        {"name": "to_pg", "kind": "load", "method": "postgres", "connection": "pg", "options": {"table": "fault_load"}}],
        {"pg": CONN["pg"]}, {"max_retries": 5, "delay_seconds": 2})
    proc = start(p)
    seen = wait_for(lambda: psql("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pipectl' AND query LIKE 'COPY%' LIMIT 1"))
    if seen:
        dev_env("down", "postgres")
        dev_env("up", "postgres")
    code, err = finish(proc, 300)
    n = psql("SELECT count(*) || ' ' || count(DISTINCT id) FROM fault_load")
    psql("DROP TABLE IF EXISTS fault_load")
    ok = bool(seen) and code == 0 and n == "2000000 2000000"
    return ok, f"exit {code}, table holds {n.replace(' ', ' rows, ')} distinct"


def mysql_killed_during_load(tmp):
    """The MariaDB connection running the load's LOAD DATA is killed: the transaction is rolled
    back, the run retried, and the table ends with every row exactly once."""
    mysql("DROP TABLE IF EXISTS fault_my_load; CREATE TABLE fault_my_load (id BIGINT PRIMARY KEY, "
          "customer_id BIGINT, amount DOUBLE) ENGINE=InnoDB")
    p = pipeline(tmp, "fault_my_load", [
        {"name": "rows", "kind": "extract", "method": "generate", "options": {"rows": 2000000}},
        {"name": "few", "kind": "transform", "method": "select", "options": {"columns": ["order_id", "customer_id", "amount"]}},
        {"name": "named", "kind": "transform", "method": "rename", "options": {"columns": {"order_id": "id"}}},
        {"name": "to_my", "kind": "load", "method": "mysql", "connection": "my", "options": {"table": "fault_my_load"}}],
        {"my": CONN["my"]}, {"max_retries": 5, "delay_seconds": 2})
    report = os.path.join(tmp, "fault_my_load_report.json")
    proc = start(p, "--report", report)
    victim = wait_for(lambda: mysql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'LOAD DATA%fault_my_load%' LIMIT 1"))
    if victim:
        time.sleep(0.3)
        mysql(f"KILL {victim}")
    code, err = finish(proc, 300)
    n = mysql("SELECT CONCAT(COUNT(*), ' ', COUNT(DISTINCT id)) FROM fault_my_load")
    mysql("DROP TABLE IF EXISTS fault_my_load")
    attempts = report_of(report).get("attempts", 0)
    ok = bool(victim) and code == 0 and attempts >= 2 and n == "2000000 2000000"
    return ok, (f"exit {code}, {attempts} attempts, table holds {n.replace(' ', ' rows, ')} distinct"
                + ("" if victim else ", never saw the load") + ("" if ok else ": " + err[-400:]))


def kafka_restarted_mid_extract(tmp):
    """1,000,000 events produced by pipectl to a 4-partition topic, then read to Parquet while the
    broker is stopped and started again: the run gets through (rskafka reconnects, or the run
    retries) and the Parquet holds every event exactly once."""
    topic = f"fault_events_{os.getpid()}"
    subprocess.run([sys.executable, "-c", (
        "import sys; from kafka.admin import KafkaAdminClient, NewTopic; "
        f"KafkaAdminClient(bootstrap_servers='{ENV['KAFKA_BOOTSTRAP_SERVERS']}').create_topics([NewTopic('{topic}', 4, 1)])")],
        check=True, capture_output=True)
    produce = pipeline(tmp, "fault_kafka_produce", [
        {"name": "rows", "kind": "extract", "method": "generate", "options": {"rows": 1000000}},
        {"name": "few", "kind": "transform", "method": "select", "options": {"columns": ["order_id", "amount", "status"]}},
        {"name": "events", "kind": "load", "method": "kafka", "connection": "kafka",
         "options": {"topic": topic, "key_column": "order_id", "compression": "lz4"}}],
        {"kafka": CONN["kafka"]})
    code, err = finish(start(produce), 300)
    if code != 0:
        return False, f"producing the events failed: {err[-400:]}"
    out = os.path.join(tmp, "fault_kafka_out")
    p = pipeline(tmp, "fault_kafka", [
        {"name": "events", "kind": "extract", "method": "kafka", "connection": "kafka",
         "options": {"topics": [topic], "schema": {"amount": "float64", "status": "string"}, "metadata": True,
                     "batch_rows": 20000}},
        {"name": "keys", "kind": "transform", "method": "rename", "options": {"columns": {"_key": "id"}}},
        {"name": "files", "kind": "load", "method": "s3", "options": {"path": out, "format": "parquet"}}],
        {"kafka": CONN["kafka"]}, {"max_retries": 5, "delay_seconds": 5})
    report = os.path.join(tmp, "fault_kafka_report.json")
    proc = start(p, "--report", report)
    time.sleep(1.0)
    reading = proc.poll() is None
    dev_env("down", "kafka")
    time.sleep(2)
    dev_env("up", "kafka")
    code, err = finish(proc, 300)
    attempts = report_of(report).get("attempts", 0)
    rows = parquet_rows(out) if code == 0 else (0, 0)
    ok = reading and code == 0 and rows == (1000000, 1000000)
    return ok, (f"stopped while reading: {reading}; exit {code}, {attempts} attempt(s), {rows[0]:,} events ({rows[1]:,} distinct)"
                + ("" if ok else ": " + err[-600:]))


def vault_back_within_retries(tmp):
    out = os.path.join(tmp, "v_out")
    p = pipeline(tmp, "fault_vault", [
        {"name": "rows", "kind": "extract", "method": "postgres", "connection": "pg", "options": {"query": "SELECT 1 AS id"}},
        {"name": "files", "kind": "load", "method": "s3", "options": {"path": out, "format": "parquet"}}],
        {"pg": CONN["pg"]}, {"max_retries": 3, "delay_seconds": 4})
    dev_env("down", "vault")
    proc = start(p)
    time.sleep(3)
    dev_env("up", "vault")
    code, err = finish(proc)
    ok = code == 0 and "unreachable" in err
    return ok, f"exit {code}" + (", retried while Vault was down" if "unreachable" in err else "")


def vault_down_for_good(tmp):
    p = pipeline(tmp, "fault_vault_gone", [
        {"name": "rows", "kind": "extract", "method": "postgres", "connection": "pg", "options": {"query": "SELECT 1 AS id"}},
        {"name": "files", "kind": "load", "method": "s3", "options": {"path": os.path.join(tmp, "vg"), "format": "parquet"}}],
        {"pg": CONN["pg"]}, {"max_retries": 1, "delay_seconds": 0.5})
    dev_env("down", "vault")
    try:
        code, err = finish(start(p))
    finally:
        dev_env("up", "vault")
    named = "Vault at" in err and "unreachable" in err and ENV["VAULT_TOKEN"] not in err
    return code == 1 and named, f"exit {code}" + (", names Vault, no token" if named else f": {err[-200:]}")


def uploads(prefix):
    r = s3().list_multipart_uploads(Bucket=ENV["S3_BUCKET"], Prefix=prefix)
    return len(r.get("Uploads", []))


def objects(prefix):
    r = s3().list_objects_v2(Bucket=ENV["S3_BUCKET"], Prefix=prefix)
    return r.get("KeyCount", 0)


def sigterm_mid_upload(tmp):
    prefix = f"fault/sigterm_{os.getpid()}/"
    p = pipeline(tmp, "fault_sigterm", [
        {"name": "rows", "kind": "extract", "method": "generate", "options": {"rows": 300000000}},
        {"name": "to_lake", "kind": "load", "method": "s3", "connection": "lake",
         "options": {"path": f"s3://{ENV['S3_BUCKET']}/{prefix}", "format": "parquet", "target_file_size_mb": 8}}],
        {"lake": CONN["lake"]})
    proc = start(p)
    seen = wait_for(lambda: uploads(prefix) > 0, 120, 0.2)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    left, visible = uploads(prefix), objects(prefix)
    ok = bool(seen) and code == 143 and left == 0 and visible == 0 and "nothing was committed" in err
    return ok, f"exit {code}, {visible} objects, {left} multipart uploads left"


def s3_killed_mid_upload(tmp):
    prefix = f"fault/s3kill_{os.getpid()}/"
    p = pipeline(tmp, "fault_s3kill", [
        {"name": "rows", "kind": "extract", "method": "generate", "options": {"rows": 3000000}},
        {"name": "to_lake", "kind": "load", "method": "s3", "connection": "lake",
         "options": {"path": f"s3://{ENV['S3_BUCKET']}/{prefix}", "format": "parquet", "target_file_size_mb": 8}}],
        {"lake": CONN["lake"]}, {"max_retries": 5, "delay_seconds": 3})
    report = os.path.join(tmp, "s3_report.json")
    proc = start(p, "--report", report)
    seen = wait_for(lambda: uploads(prefix) > 0, 120, 0.1)
    dev_env("down", "s3")
    time.sleep(1)
    dev_env("up", "s3")
    code, err = finish(proc, 300)
    rows = 0
    if code == 0:
        t = ds.dataset(f"{ENV['S3_BUCKET']}/{prefix}", format="parquet", filesystem=_pa_s3()).to_table(columns=["order_id"])
        rows = t.num_rows
    attempts = json.load(open(report))["attempts"] if os.path.exists(report) else 0
    ok = bool(seen) and code == 0 and attempts >= 2 and rows == 3000000 and uploads(prefix) == 0
    return ok, f"exit {code}, {attempts} attempts, {rows:,} rows, {uploads(prefix)} uploads left" + ("" if ok else ": " + " | ".join(l for l in err.splitlines() if "error" in l.lower())[-900:])


def _pa_s3():
    from pyarrow import fs
    return fs.S3FileSystem(access_key=S3["access_key_id"], secret_key=S3["secret_access_key"], region=S3["region"],
                           endpoint_override=S3["endpoint"], scheme="http")


def two_loads(tmp, name, table):
    lake = os.path.join(tmp, f"{name}_lake")
    p = pipeline(tmp, name, [
        {"name": "rows", "kind": "extract", "method": "generate", "options": {"rows": 10000}},
        {"name": "few", "kind": "transform", "method": "select", "options": {"columns": ["order_id", "amount"]}},
        {"name": "to_lake", "kind": "load", "method": "delta", "options": {"path": lake}},
        {"name": "to_pg", "kind": "load", "method": "postgres", "connection": "pg", "options": {"table": table}}],
        {"pg": CONN["pg"]})
    return p, lake


def delta_rows(lake):
    return ds.dataset(lake, format="parquet", exclude_invalid_files=True).count_rows() if os.path.isdir(lake) else 0


def report_of(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}


def second_commit_fails(tmp):
    """The second load's commit is refused (a deferred unique constraint): the first stays
    committed once and the report names both; after the conflict is removed, `--resume RUN_ID`
    writes only the second."""
    psql("DROP TABLE IF EXISTS fault_two; CREATE TABLE fault_two (order_id bigint, amount double precision, "
         "CONSTRAINT fault_two_uniq UNIQUE (order_id) DEFERRABLE INITIALLY DEFERRED); INSERT INTO fault_two VALUES (5, 1.0)")
    p, lake = two_loads(tmp, "fault_two", "fault_two")
    report = os.path.join(tmp, "fault_two_report.json")
    code, err = finish(start(p, "--report", report))
    run_id = report_of(report).get("run_id", "")
    lake_rows, pg_rows = delta_rows(lake), psql("SELECT count(*) FROM fault_two")
    named = "committed: to_lake; not committed: to_pg" in err and f"--resume {run_id}" in err
    psql("DELETE FROM fault_two")
    code2, err2 = finish(start(p, "--resume", run_id, "--report", report))
    resumed = report_of(report)
    lake2, pg2 = delta_rows(lake), psql("SELECT count(*) FROM fault_two")
    psql("DROP TABLE IF EXISTS fault_two; DROP TABLE IF EXISTS _pipectl_loads")
    ok = (code == 1 and named and lake_rows == 10000 and pg_rows == "1" and code2 == 0
          and resumed.get("already_committed_loads") == ["to_lake"] and lake2 == 10000 and pg2 == "10000")
    return ok, (f"exit {code}: Delta {lake_rows:,}, PostgreSQL {pg_rows} row" + ("; report names both" if named else "")
                + f"; --resume: exit {code2}, Delta {lake2:,}, PostgreSQL {pg2} rows"
                + ("" if ok else ": " + err2[-600:]))


def killed_between_commits(tmp):
    """SIGKILL while the second load commits (a deferred trigger makes its COMMIT take 4 s): no
    cleanup runs at all. `--resume RUN_ID` then leaves each sink with the rows once, whether
    or not PostgreSQL finished that commit on its own."""
    psql("DROP TABLE IF EXISTS fault_kill; CREATE TABLE fault_kill (order_id bigint, amount double precision); "
         "CREATE OR REPLACE FUNCTION fault_kill_slow() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN PERFORM pg_sleep(4); RETURN NULL; END $$; "
         "CREATE CONSTRAINT TRIGGER fault_kill_slow AFTER INSERT ON fault_kill DEFERRABLE INITIALLY DEFERRED "
         "FOR EACH ROW WHEN (NEW.order_id = 1) EXECUTE FUNCTION fault_kill_slow()")
    p, lake = two_loads(tmp, "fault_kill", "fault_kill")
    proc = start(p, "--log-format", "json")
    # The run id is in the first log line; the Delta commit appears when the first load is done.
    committed = wait_for(lambda: os.path.exists(os.path.join(lake, "_delta_log", "00000000000000000000.json")), 60)
    time.sleep(0.5)
    proc.kill()
    _, err = proc.communicate(timeout=30)
    run_id = ""
    for line in err.splitlines():
        if '"run_id"' in line:
            run_id = json.loads(line).get("span", {}).get("run_id", "") or json.loads(line).get("run_id", "")
            if run_id:
                break
    time.sleep(4.5)  # let PostgreSQL finish (or not) the orphaned commit
    before = (delta_rows(lake), psql("SELECT count(*) FROM fault_kill"))
    code, err2 = finish(start(p, "--resume", run_id))
    after = (delta_rows(lake), psql("SELECT count(*) FROM fault_kill"))
    psql("DROP TABLE IF EXISTS fault_kill; DROP FUNCTION IF EXISTS fault_kill_slow(); DROP TABLE IF EXISTS _pipectl_loads")
    ok = bool(committed) and bool(run_id) and code == 0 and after == (10000, "10000")
    return ok, (f"killed after the Delta commit (Delta {before[0]:,}, PostgreSQL {before[1]} rows); "
                f"--resume {run_id or '?'}: exit {code}, Delta {after[0]:,}, PostgreSQL {after[1]} rows"
                + ("" if ok else ": " + err2[-600:]))


def kafka_restarted_mid_stream(tmp):
    """A stream (Kafka -> PostgreSQL, exactly-once) runs while a producer writes 30,000 events;
    the broker is stopped and started again mid-stream: the stream recovers by itself (the
    micro-batch is retried on the same offsets), and after the producer ends the table holds
    every event exactly once. SIGTERM then ends the stream with exit 0."""
    topic = f"fault_stream_{os.getpid()}"
    table = topic
    producer = os.path.join(ROOT, "scripts/dev-env.d/produce_orders.py")
    boot = ENV["KAFKA_BOOTSTRAP_SERVERS"]
    subprocess.run([sys.executable, producer, boot, topic, "--count", "1"], check=True, capture_output=True)
    path = os.path.join(tmp, "fault_stream.json")
    with open(path, "w") as f:
        json.dump({
            "name": "fault_stream", "mode": "streaming",
            "streaming": {"trigger_interval": "200ms", "log_interval": "2s", "shutdown_timeout": "20s"},
            "retry": {"max_retries": 10, "delay_seconds": 3},
            "connections": {"kafka": CONN["kafka"], "pg": CONN["pg"]},
            "steps": [
                {"name": "orders", "kind": "extract", "method": "kafka", "connection": "kafka",
                 "options": {"topics": [topic], "schema": {"order_id": "int64", "customer_id": "int64",
                                                          "status": "string", "amount": "float64", "event_time": "int64"}}},
                {"name": "to_pg", "kind": "load", "method": "postgres", "connection": "pg",
                 "options": {"table": table, "create_table": True}}]}, f)
    try:
        proc = start(path)
        more = subprocess.Popen([sys.executable, producer, boot, topic, "--count", "29999", "--first", "2",
                                 "--rate", "3000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        count = lambda: int(psql(f'SELECT count(*) FROM "{table}"') or 0) if psql(
            f"SELECT to_regclass('\"{table}\"') IS NOT NULL") == "t" else 0
        streaming = wait_for(lambda: count() > 0, 60) is not None
        dev_env("down", "kafka")
        time.sleep(3)
        dev_env("up", "kafka")
        _, perr = more.communicate(timeout=300)
        if more.returncode != 0:
            # The producer may have hit the stopped broker: produce the rest again, its ids
            # are unique, so anything sent twice shows as a duplicate event, not a pass.
            return False, f"the producer failed while the broker was down: {perr[-300:]}"
        done = wait_for(lambda: count() >= 30000, 120, 0.5) is not None
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc, 60)
        rows = psql(f'SELECT count(*) || \' \' || count(DISTINCT order_id) FROM "{table}"')
        ok = streaming and done and code == 0 and rows == "30000 30000"
        return ok, (f"streaming before the restart: {streaming}; after it: {rows} rows (count distinct); SIGTERM exit {code}"
                    + ("" if ok else ": " + err[-600:]))
    finally:
        psql(f'DROP TABLE IF EXISTS "{table}"')


CASES = [
    ("PostgreSQL backend terminated mid-extract", "retried; every row once", pg_backend_terminated),
    ("MariaDB connection killed mid-extract", "retried; every row once", mysql_connection_killed),
    ("PostgreSQL restarted during the load", "rolled back, retried; exact rows", pg_restarted_during_load),
    ("MariaDB connection killed during LOAD DATA", "rolled back, retried; exact rows", mysql_killed_during_load),
    ("Kafka broker restarted mid-extract", "every event once", kafka_restarted_mid_extract),
    ("Kafka broker restarted mid-stream", "recovers by itself; every event once; SIGTERM exit 0", kafka_restarted_mid_stream),
    ("Vault down at start, back within retries", "exit 0", vault_back_within_retries),
    ("Vault down for good", "exit 1 naming Vault, no token", vault_down_for_good),
    ("SIGTERM during multipart uploads", "exit 143; no object, no upload left", sigterm_mid_upload),
    ("S3-API server killed mid-upload, restarted", "retried; complete, no upload left", s3_killed_mid_upload),
    ("second load fails at commit (deferred unique)", "exit 1, first committed once; --resume writes only the second", second_commit_fails),
    ("SIGKILL while the second load commits", "--resume: each sink holds every row once", killed_between_commits),
]


def restore():
    """Whatever a case stopped runs again, and the data is reseeded (a service that was just
    restarted may need a moment: one more try)."""
    for attempt in (1, 2):
        r = subprocess.run([os.path.join(ROOT, "scripts/dev-env"), "up"], capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(3)
    print(f"fault suite: restoring the environment failed:\n{r.stderr[-2000:]}", file=sys.stderr)
    sys.exit(1)


def main():
    wanted = sys.argv[1:]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, expected, case in CASES:
            if wanted and not any(w in case.__name__ for w in wanted):
                continue
            t0 = time.time()
            try:
                ok, observed = case(tmp)
            except Exception as e:  # a broken case is a failed case, with its reason
                ok, observed = False, f"{type(e).__name__}: {e}"
            results.append((name, expected, observed, ok, time.time() - t0))
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {observed} ({time.time() - t0:.1f}s)", flush=True)
    restore()
    if not results:
        print(f"fault suite: no case matches {' '.join(wanted)} (names: {', '.join(c.__name__ for _, _, c in CASES)})", file=sys.stderr)
        sys.exit(2)
    w = max(len(r[0]) for r in results)
    e = max(len(r[1]) for r in results)
    print(f"\n{'fault':<{w}}  {'expected':<{e}}  observed")
    for name, expected, observed, ok, _ in results:
        print(f"{name:<{w}}  {expected:<{e}}  {'' if ok else 'FAIL: '}{observed}")
    failed = sum(1 for r in results if not r[3])
    print(f"\nfaults: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
