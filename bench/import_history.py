"""Benchmark: `import_history` end to end on PostgreSQL, against a raw binary COPY of the same
session rows into the same table, measured in the same run.

    .venv/bin/python bench/import_history.py
    BENCH_SESSIONS=200000 .venv/bin/python bench/import_history.py   # smaller

Generates CSV files for BENCH_CUSTOMERS (10,000) customers: BENCH_SESSIONS (1,000,000) sessions,
50,000 tickets, 30,000 NPS answers and 30,000 subscription versions; imports them into a fresh
database (BENCH_DATABASE_URL, default …/churnshield_importbench, dropped and re-created) through
`manage.py import_history`, one process per file (parse, validate, write, indexes). The raw COPY
baseline writes the session rows, already parsed, with psycopg's binary COPY into the same
(empty, indexed) user_sessions table, which is then emptied for the import. Prints rows/s per
file, the session ratio to COPY, the time of a second (no-change) import, and the peak RSS of
the import processes.
"""

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, ROOT, BenchDatabase

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_importbench")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "10000"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "1000000"))
TICKETS = int(os.environ.get("BENCH_TICKETS", "50000"))
NPS = int(os.environ.get("BENCH_NPS", "30000"))
SUBSCRIPTIONS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "30000"))
ACTIONS = ["view_dashboard", "open_report", "export_report", "run_query", "share_report", "invite_user"]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
EPOCH = NOW - dt.timedelta(days=730)


def _times(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 729 * 86400, n)


def _iso(seconds: int) -> str:
    return (EPOCH + dt.timedelta(seconds=int(seconds))).isoformat()


def generate(directory: Path) -> list[tuple]:
    """The five files; returns the session rows (customer ref, start, end, pages, actions JSON, id)."""
    rng = np.random.default_rng(1)
    with open(directory / "customers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "name", "email", "plan", "mrr", "signup_date", "is_active", "churned_at"])
        for i in range(CUSTOMERS):
            churned = i % 7 == 0
            w.writerow(
                [f"c{i}", f"Customer {i}", f"c{i}@example.com", "Pro", "199.00", EPOCH.date().isoformat()]
                + (["false", (NOW - dt.timedelta(days=i % 300 + 1)).date().isoformat()] if churned else ["true", ""])
            )
    sessions = []
    starts = _times(rng, SESSIONS)
    owners = rng.integers(0, CUSTOMERS, SESSIONS)
    lengths = rng.integers(60, 3600, SESSIONS)
    pages = rng.integers(0, 30, SESSIONS)
    picks = rng.integers(0, len(ACTIONS), (SESSIONS, 4))
    counts = rng.integers(0, 5, SESSIONS)
    with open(directory / "user_sessions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "customer", "started_at", "ended_at", "pages_viewed", "actions"])
        for i in range(SESSIONS):
            actions = json.dumps([ACTIONS[k] for k in picks[i][: counts[i]]])
            row = (f"c{owners[i]}", _iso(starts[i]), _iso(starts[i] + lengths[i]), int(pages[i]), actions, f"s{i}")
            w.writerow([row[5], *row[:5]])
            sessions.append(row)
    with open(directory / "support_tickets.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "customer", "opened_at", "closed_at", "priority", "status", "subject"])
        for i, (t, c) in enumerate(zip(_times(rng, TICKETS), rng.integers(0, CUSTOMERS, TICKETS), strict=True)):
            w.writerow([f"t{i}", f"c{c}", _iso(t), _iso(t + 86400) if i % 5 else "", "normal", "", f"Ticket {i}"])
    with open(directory / "nps_responses.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "customer", "responded_at", "score", "comment"])
        for i, (t, c) in enumerate(zip(_times(rng, NPS), rng.integers(0, CUSTOMERS, NPS), strict=True)):
            w.writerow([f"n{i}", f"c{c}", _iso(t), i % 11, ""])
    with open(directory / "subscriptions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "customer", "plan", "mrr", "start_date", "end_date", "status"])
        versions = max(1, SUBSCRIPTIONS // CUSTOMERS)
        for i in range(SUBSCRIPTIONS):
            customer, version = i % CUSTOMERS, i // CUSTOMERS
            start = EPOCH + dt.timedelta(days=version * 240)
            last = version == versions - 1
            end = "" if last else (start + dt.timedelta(days=240)).isoformat()
            w.writerow(
                [
                    f"sub{customer}",
                    f"c{customer}",
                    "Pro",
                    "199.00",
                    start.isoformat(),
                    end,
                    "active" if last else "ended",
                ]
            )
    return sessions


PEAKS: dict[str, tuple[float, float]] = {}  # file -> (peak RSS in MB, CPU seconds of the import process)


def run_import(path: Path, env: dict) -> tuple[float, str]:
    """One `manage.py import_history` process; its own peak RSS and CPU time through GNU time (the
    bench process is large, and a child's RSS would count the parent's pages until it execs)."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%M %U %S",
            str(BIN / "python"),
            "manage.py",
            "import_history",
            str(path),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"import of {path.name} failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    rss, user, system = result.stderr.strip().splitlines()[-1].split()
    PEAKS[path.name if path.name not in PEAKS else f"{path.name} again"] = (
        int(rss) / 1024,
        float(user) + float(system),
    )
    return elapsed, result.stdout


def raw_copy(sessions: list[tuple]) -> float:
    """Binary COPY of the parsed session rows into user_sessions (empty, with its indexes)."""
    with psycopg.connect(DATABASE_URL) as conn:
        ids = dict(conn.execute("SELECT external_id, id FROM customers").fetchall())
        # Rows are built (parsed) before the clock starts: the baseline is the database's write.
        rows = [
            (ids[c], dt.datetime.fromisoformat(s), dt.datetime.fromisoformat(e), p, a, x)
            for c, s, e, p, a, x in sessions
        ]
        started = time.perf_counter()
        with conn.cursor() as cursor:
            statement = (
                "COPY user_sessions (customer_id, started_at, ended_at, pages_viewed, actions, external_id)"
                " FROM STDIN (FORMAT BINARY)"
            )
            with cursor.copy(statement) as copy:
                copy.set_types(["int4", "timestamptz", "timestamptz", "int4", "jsonb", "text"])
                for row in rows:
                    copy.write_row((*row[:4], psycopg.types.json.Jsonb(json.loads(row[4])), row[5]))
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("TRUNCATE user_sessions")
        conn.commit()
    return elapsed


def main() -> None:
    db = BenchDatabase(DATABASE_URL, CUSTOMERS, 1.0)
    name = DATABASE_URL.rsplit("/", 1)[1]
    db.psql(f"DROP DATABASE IF EXISTS {name}", admin=True)
    db.psql(f"CREATE DATABASE {name}", admin=True)
    db.manage("migrate", "--noinput")
    env = {**db.env, "CELERY_TASK_ALWAYS_EAGER": "false", "CELERY_BROKER_URL": "memory://"}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        sessions = generate(directory)
        size = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        print(
            f"generated {SESSIONS:,} sessions and the rest: {size:.0f} MB of CSV"
            f" in {time.perf_counter() - started:.0f} s"
        )
        counts = {
            "customers": CUSTOMERS,
            "subscriptions": SUBSCRIPTIONS,
            "user_sessions": SESSIONS,
            "support_tickets": TICKETS,
            "nps_responses": NPS,
        }
        timings: dict[str, float] = {}
        timings["customers"], _ = run_import(directory / "customers.csv", env)
        copy_seconds = raw_copy(sessions)
        del sessions
        for kind in ("subscriptions", "user_sessions", "support_tickets", "nps_responses"):
            timings[kind], output = run_import(directory / f"{kind}.csv", env)
            print(output.strip().splitlines()[0])
        again, output = run_import(directory / "user_sessions.csv", env)
    total = sum(timings.values())
    rows = sum(counts.values())
    print()
    for kind, seconds in timings.items():
        print(f"{kind:16} {counts[kind]:>9,} rows {seconds:6.1f} s  {counts[kind] / seconds:>9,.0f} rows/s")
    print(f"{'total':16} {rows:>9,} rows {total:6.1f} s  {rows / total:>9,.0f} rows/s   (target: under 60 s)")
    copy_rate, import_rate = SESSIONS / copy_seconds, SESSIONS / timings["user_sessions"]
    print(
        f"sessions: import {import_rate:,.0f} rows/s, raw binary COPY {copy_rate:,.0f} rows/s ({copy_seconds:.1f} s)"
        f" -> ratio {import_rate / copy_rate:.2f}x (target >= 0.5x)"
    )
    print(f"second import of the sessions (no change): {again:.1f} s - {output.strip().splitlines()[0]}")
    peak = max(rss for rss, _ in PEAKS.values())
    print(f"peak RSS of an import process: {peak:.0f} MB (target under 500 MB)")
    cpu = PEAKS["user_sessions.csv"][1]
    print(f"CPU time of the sessions import process: {cpu:.1f} s ({SESSIONS / cpu:,.0f} rows per CPU second)")


if __name__ == "__main__":
    main()
