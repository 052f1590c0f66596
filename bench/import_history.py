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

    .venv/bin/python bench/import_history.py --api

compares the two interfaces on the same files: one `manage.py import_history DIR` process, then
(database emptied again) one upload of the five files to `POST /api/imports` on a real uvicorn,
imported by a real Celery worker (Redis: BENCH_REDIS_URL, default REDIS_URL), timed from the
first byte uploaded to the job's end as seen by polling `GET /api/imports/{id}`.
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


def fresh_database() -> BenchDatabase:
    db = BenchDatabase(DATABASE_URL, CUSTOMERS, 1.0)
    name = DATABASE_URL.rsplit("/", 1)[1]
    db.psql(f"DROP DATABASE IF EXISTS {name}", admin=True)
    db.psql(f"CREATE DATABASE {name}", admin=True)
    db.manage("migrate", "--noinput")
    return db


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def api_import(directory: Path, redis_url: str) -> tuple[float, float, dict]:
    """Upload every file in one request to a real uvicorn; a real worker imports them. Returns
    (upload seconds, seconds until the job ended, the job)."""
    import httpx

    db = fresh_database()
    env = {**db.env, "REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "false"}
    db.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User; u = User.objects.create_user('bench-manager',"
        " password='bench-pass-123'); u.groups.add(Group.objects.get(name='manager'))",
    )
    token = db.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from core.auth.tokens import issue_tokens;"
        " print(issue_tokens(User.objects.get(username='bench-manager'))['access'])",
    ).split()[-1]
    port = _free_port()
    processes = [
        subprocess.Popen(
            [str(BIN / "uvicorn"), "churnshield.asgi:application", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen(
            [str(BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "--loglevel", "WARNING"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        ),
    ]
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/signin", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, 60, "uvicorn")
        time.sleep(3)  # the worker connects to Redis
        paths = sorted(directory.glob("*.csv"))
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:
            handles = [open(p, "rb") for p in paths]  # noqa: SIM115 (closed below)
            started = time.perf_counter()
            try:
                files = [("files", (p.name, h)) for p, h in zip(paths, handles, strict=True)]
                response = client.post("/api/imports", files=files)
            finally:
                for handle in handles:
                    handle.close()
            uploaded = time.perf_counter() - started
            if response.status_code != 202:
                sys.exit(f"upload refused: {response.status_code} {response.text[:2000]}")
            job_id = response.json()["id"]
            job: dict = {}

            def done() -> bool:
                nonlocal job
                job = client.get(f"/api/imports/{job_id}").json()
                return job["status"] in ("succeeded", "failed")

            _wait(done, 3600, "the import job")
            return uploaded, time.perf_counter() - started, job
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def compare_interfaces() -> None:
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL")
    if not redis_url:
        sys.exit("--api needs Redis: set BENCH_REDIS_URL or REDIS_URL")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        generate(directory)
        size = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        rows = CUSTOMERS + SESSIONS + TICKETS + NPS + SUBSCRIPTIONS
        print(f"{rows:,} rows ({SESSIONS:,} sessions) in {size:.0f} MB of CSV")
        db = fresh_database()
        started = time.perf_counter()
        result = subprocess.run(
            [str(BIN / "python"), "manage.py", "import_history", str(directory), "--no-progress"],
            cwd=ROOT,
            env=db.env,
            capture_output=True,
            text=True,
        )
        cli = time.perf_counter() - started
        if result.returncode:
            sys.exit(f"CLI import failed:\n{result.stdout}\n{result.stderr[-3000:]}")
        print(f"CLI  manage.py import_history DIR (one process): {cli:6.1f} s  {rows / cli:>8,.0f} rows/s")
        uploaded, total, job = api_import(directory, redis_url)
        if job["status"] != "succeeded":
            sys.exit(f"API job failed: {json.dumps(job)[:3000]}")
        print(
            f"API  POST /api/imports + worker:                 {total:6.1f} s  {rows / total:>8,.0f} rows/s"
            f"  (upload {uploaded:.1f} s, import {total - uploaded:.1f} s)"
        )
        print("     per kind:", json.dumps(job["result"]["totals"]))


def main() -> None:
    if "--api" in sys.argv:
        compare_interfaces()
        return
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
