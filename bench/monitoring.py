"""Monitoring and maintenance figures: backup and restore time of a realistic database, and the
latency of /healthz, /readyz (every check live: PostgreSQL, Redis, broker, worker, beat, model,
batch) and /metrics through the real ASGI server.

    make bench-monitoring   (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/churnshield_monbench;
                             BENCH_REDIS_URL, default redis://127.0.0.1:6379/8; BENCH_CUSTOMERS, default 10000)
"""

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, ROOT, BenchDatabase

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_monbench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "10000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200"))
DB = BenchDatabase(DATABASE_URL, CUSTOMERS, activity_scale=1.0)


def timed(label: str, fn) -> float:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.2f} s", flush=True)
    return seconds


def backup_and_restore() -> None:
    rows = DB.psql("SELECT (SELECT count(*) FROM customers) || ' customers, ' || (SELECT count(*) FROM user_sessions)"
                   " || ' sessions, ' || pg_size_pretty(pg_database_size(current_database()))")  # fmt: skip
    print(f"database: {rows}")
    with tempfile.TemporaryDirectory() as directory:
        DB.env["BACKUP_DIR"] = directory
        out = []
        timed("backup_db (pg_dump custom format)", lambda: out.append(DB.manage("backup_db").strip()))
        print(f"backup file: {Path(out[0]).stat().st_size / 1e6:.1f} MB")
        scratch = DATABASE_URL.rsplit("/", 1)[1] + "_restore"
        DB.psql(f"DROP DATABASE IF EXISTS {scratch}", admin=True)
        DB.psql(f"CREATE DATABASE {scratch}", admin=True)
        restore = BenchDatabase(DATABASE_URL.rsplit("/", 1)[0] + "/" + scratch, CUSTOMERS, 1.0)
        restore.env["BACKUP_DIR"] = directory
        try:
            timed("restore_db into an empty database", lambda: restore.manage("restore_db", "--latest", "--noinput"))
            assert restore.psql("SELECT count(*) FROM user_sessions") == DB.psql("SELECT count(*) FROM user_sessions")
        finally:
            DB.psql(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)", admin=True)


def probe_latency() -> None:
    env = {**DB.env, "REDIS_URL": REDIS_URL, "CELERY_TASK_ALWAYS_EAGER": "false", "METRICS_TOKEN": "bench-token",
           "DJANGO_SETTINGS_MODULE": "bench.settings"}  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    processes = [
        subprocess.Popen([str(BIN / "uvicorn"), "churnshield.asgi:application", "--port", str(port)],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([str(BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "-n", "bench@%h"],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([str(BIN / "celery"), "-A", "churnshield", "beat", "-s", tempfile.mktemp()],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10, headers={"Authorization": "Bearer bench-token"}) as client:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit(f"/readyz never became ready: {client.get('/readyz').text}")
                time.sleep(0.5)
            for path in ("/healthz", "/readyz", "/metrics"):
                latencies = []
                for _ in range(REQUESTS):
                    started = time.perf_counter()
                    response = client.get(path)
                    latencies.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                latencies.sort()
                p95 = latencies[int(len(latencies) * 0.95) - 1]
                print(
                    f"GET {path}: median {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms ({REQUESTS} requests)"
                )
            checks = client.get("/readyz").json()["checks"]
            print("readyz checks (ms): " + ", ".join(f"{name} {c.get('ms', '-')}" for name, c in checks.items()))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    DB.prepare()
    if "champion" not in DB.manage("shell", "-c", "from predictions.selectors import champion; print(champion())"):
        timed("train_model (once)", lambda: DB.manage("train_model"))
    timed("score_customers (the batch /readyz wants recent)", lambda: DB.manage("score_customers"))
    backup_and_restore()
    probe_latency()


if __name__ == "__main__":
    main()
