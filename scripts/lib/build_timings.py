"""Summarises cargo's --timings HTML report: wall time, the CPU time of every compiled unit, the
heaviest crates, and the time per dependency family (Polars, Arrow/Parquet, Delta, DataFusion,
the AWS SDK, TLS, pipectl's own crates).

Usage: python3 scripts/lib/build_timings.py REPORT.html [REPORT.html ...]
"""

import json
import re
import sys

FAMILIES = [
    ("polars", lambda n: n.startswith("polars") or n == "sqlparser"),
    ("arrow/parquet", lambda n: n.startswith("arrow") or n == "parquet"),
    ("delta-rs + kernel", lambda n: n.startswith(("deltalake", "buoyant_kernel", "delta_kernel"))),
    ("datafusion", lambda n: n.startswith("datafusion")),
    ("aws sdk", lambda n: n.startswith(("aws-", "aws_")) and not n.startswith("aws-lc")),
    ("tls (aws-lc, ring, rustls)", lambda n: n.startswith(("aws-lc", "ring", "rustls"))),
    ("pipectl's crates", lambda n: n.startswith("pipeline-") or n == "pipectl"),
]


def summary(path):
    html = open(path, encoding="utf-8").read()
    units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
    wall = re.search(r"<td>Total time:</td><td>([^<]*)</td>", html)
    cpu = sum(u["duration"] for u in units)
    by_crate = {}
    for u in units:
        by_crate[u["name"]] = by_crate.get(u["name"], 0) + u["duration"]
    print(f"{path}")
    print(f"  wall {wall.group(1) if wall else '?'}; {len(units)} units, {len(by_crate)} crates, CPU {cpu:,.0f} s")
    for name, test in FAMILIES:
        t = sum(v for k, v in by_crate.items() if test(k))
        print(f"  {name:28} {t:7,.0f} s CPU ({100 * t / cpu:4.1f}%)")
    top = sorted(by_crate.items(), key=lambda kv: -kv[1])[:12]
    print("  heaviest: " + ", ".join(f"{k} {v:.0f} s" for k, v in top))


for p in sys.argv[1:]:
    summary(p)
