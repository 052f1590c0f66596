"""Benchmark: customer list and dashboard metrics through the real ASGI server, against a raw
cursor+orjson view over the same rows, measured in the same run.

    make bench                       # 100,000 customers in PostgreSQL (seeded once, reused)
    BENCH_CUSTOMERS=20000 make bench # smaller book

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/churnshield_bench).
Prints median and p95 latency, requests per second and the ratio to the baseline.
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_bench")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1500"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
ENV = {**os.environ, "DATABASE_URL": DATABASE_URL, "DJANGO_SETTINGS_MODULE": "bench.settings", "REDIS_URL": ""}


def manage(*args: str) -> str:
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    if result.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare() -> None:
    name = DATABASE_URL.rsplit("/", 1)[1]
    exists = subprocess.run(
        [
            "psql",
            DATABASE_URL.rsplit("/", 1)[0] + "/postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname='{name}'",
        ],
        capture_output=True,
        text=True,
    )
    if exists.stdout.strip() != "1":
        subprocess.run(
            ["psql", DATABASE_URL.rsplit("/", 1)[0] + "/postgres", "-c", f"CREATE DATABASE {name}"], check=True
        )
    manage("migrate", "--noinput")
    count = int(
        manage("shell", "-c", "from customers.models import Customer; print(Customer.objects.count())").split()[-1]
    )
    if count < CUSTOMERS:
        print(f"seeding {CUSTOMERS} customers (once; reused by later runs)...", flush=True)
        started = time.perf_counter()
        manage("flush", "--noinput")
        manage("seed_demo", "--customers", str(CUSTOMERS), "--seed", "1", "--activity-scale", "0.02")
        print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    manage("shell", "-c", "from django.db import connection; connection.cursor().execute('ANALYZE')")


def token() -> str:
    code = (
        "from django.contrib.auth.models import Group, User\n"
        "u, _ = User.objects.get_or_create(username='bench-manager', defaults={'is_staff': True})\n"
        "u.groups.add(Group.objects.get(name='manager'))\n"
        "from churnshield.auth.tokens import issue_tokens\n"
        "print(issue_tokens(u)['access'])"
    )
    return manage("shell", "-c", code).split()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def measure(base: str, path: str, headers: dict[str, str]) -> dict[str, float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(50):  # warm-up: connections, query plans, caches
            (await client.get(path)).raise_for_status()
        remaining = REQUESTS

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                page = 1 + (remaining % 50)
                url = path.replace("{page}", str(page))
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "rps": len(latencies) / elapsed,
    }


async def serial_median(base: str, path: str, headers: dict[str, str], n: int = 200) -> float:
    """Latency of one request at a time (no queueing): what a user waits for."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(10):
            await client.get(path)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            (await client.get(path)).raise_for_status()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    prepare()
    auth = {"Authorization": f"Bearer {token()}"}
    port = free_port()
    server = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            "churnshield.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=ENV,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/signin", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        raw = asyncio.run(measure(base, "/bench/raw-customers?per_page=100&page={page}", {}))
        listed = asyncio.run(measure(base, "/api/customers?per_page=100&page={page}", auth))
        metrics = asyncio.run(measure(base, "/api/dashboard/metrics", auth))
        metrics_serial = asyncio.run(serial_median(base, "/api/dashboard/metrics", auth))
        list_serial = asyncio.run(serial_median(base, "/api/customers?per_page=100", auth))
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(
        f"\n{CUSTOMERS:,} customers, PostgreSQL, one uvicorn process,"
        f" {CONCURRENCY} concurrent clients, {REQUESTS} requests per endpoint"
    )
    print(f"{'endpoint':44} {'median ms':>10} {'p95 ms':>8} {'req/s':>8}")
    for label, row in (
        ("raw cursor + orjson (baseline)", raw),
        ("GET /api/customers?per_page=100", listed),
        ("GET /api/dashboard/metrics", metrics),
    ):
        print(f"{label:44} {row['median_ms']:10.1f} {row['p95_ms']:8.1f} {row['rps']:8.0f}")
    print(f"\nlist throughput vs baseline: {listed['rps'] / raw['rps']:.2f}x   (target >= 0.5x)")
    print(f"list latency, one request at a time: median {list_serial:.1f} ms")
    print(f"dashboard metrics, one request at a time: median {metrics_serial:.1f} ms   (target <= 100 ms)")


if __name__ == "__main__":
    main()
