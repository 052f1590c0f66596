"""Benchmark: customer list and dashboard metrics through the real ASGI server, against a raw
cursor+orjson view over the same rows, measured in the same run. Also the unpaged list the React
app asks for (`GET /api/customers`, no paging parameters: up to API_UNPAGED_MAX = 10,000 rows)
against the raw view of the same 10,000 rows.

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, ROOT, BenchDatabase

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_bench")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000"))
UNPAGED_REQUESTS = int(os.environ.get("BENCH_UNPAGED_REQUESTS", "40"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DB = BenchDatabase(DATABASE_URL, CUSTOMERS, activity_scale=0.02)
ENV = DB.env


def token() -> str:
    code = (
        "from django.contrib.auth.models import Group, User\n"
        "u, _ = User.objects.get_or_create(username='bench-manager', defaults={'is_staff': True})\n"
        "u.groups.add(Group.objects.get(name='manager'))\n"
        "from core.auth.tokens import issue_tokens\n"
        "print(issue_tokens(u)['access'])"
    )
    return DB.manage("shell", "-c", code).split()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def measure(
    base: str, path: str, headers: dict[str, str], requests: int = REQUESTS, warm: int = 50
) -> dict[str, float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        for _ in range(warm):  # warm-up: connections, query plans, caches
            (await client.get(path.replace("{page}", "1"))).raise_for_status()
        remaining = requests

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


async def serial(base: str, path: str, headers: dict[str, str], n: int = 300) -> dict[str, float]:
    """One request at a time (no queueing): the latency a user waits for."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(20):
            await client.get(path.replace("{page}", "1"))
        samples = []
        for i in range(n):
            started = time.perf_counter()
            (await client.get(path.replace("{page}", str(1 + i % 50)))).raise_for_status()
            samples.append(time.perf_counter() - started)
    samples.sort()
    return {"median_ms": statistics.median(samples) * 1000, "p95_ms": samples[int(len(samples) * 0.95) - 1] * 1000}


def main() -> None:
    DB.prepare()
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
        raw_path, list_path = "/bench/raw-customers?per_page=100&page={page}", "/api/customers?per_page=100&page={page}"
        # Alternate baseline and list rounds so drift on a shared machine hits both alike.
        rounds = [
            (asyncio.run(measure(base, raw_path, {})), asyncio.run(measure(base, list_path, auth)))
            for _ in range(ROUNDS)
        ]
        ratios = sorted(listed["rps"] / raw["rps"] for raw, listed in rounds)
        raw, listed = sorted(rounds, key=lambda pair: pair[1]["rps"] / pair[0]["rps"])[len(rounds) // 2]
        metrics = asyncio.run(measure(base, "/api/dashboard/metrics", auth))
        unpaged_rows = len(httpx.get(f"{base}/api/customers", headers=auth, timeout=120).json())
        raw_all = f"/bench/raw-customers?per_page={unpaged_rows}&page=1"
        unpaged_rounds = [
            (
                asyncio.run(measure(base, raw_all, {}, UNPAGED_REQUESTS, warm=3)),
                asyncio.run(measure(base, "/api/customers", auth, UNPAGED_REQUESTS, warm=3)),
            )
            for _ in range(ROUNDS)
        ]
        unpaged_ratios = sorted(listed["rps"] / raw["rps"] for raw, listed in unpaged_rounds)
        raw_unpaged, unpaged = sorted(unpaged_rounds, key=lambda pair: pair[1]["rps"] / pair[0]["rps"])[
            len(unpaged_rounds) // 2
        ]
        raw_serial = asyncio.run(serial(base, raw_path, {}))
        list_serial = asyncio.run(serial(base, list_path, auth))
        metrics_serial = asyncio.run(serial(base, "/api/dashboard/metrics", auth))
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(f"\n{CUSTOMERS:,} customers in PostgreSQL, one uvicorn process")
    print(f"\nthroughput: {CONCURRENCY} concurrent clients, {REQUESTS} requests per endpoint")
    print(f"{'endpoint':44} {'median ms':>10} {'p95 ms':>8} {'req/s':>8}")
    for label, row in (
        ("raw cursor + orjson (baseline)", raw),
        ("GET /api/customers?per_page=100", listed),
        ("GET /api/dashboard/metrics", metrics),
        (f"raw cursor + orjson, {unpaged_rows:,} rows", raw_unpaged),
        (f"GET /api/customers (unpaged, {unpaged_rows:,})", unpaged),
    ):
        print(f"{label:44} {row['median_ms']:10.1f} {row['p95_ms']:8.1f} {row['rps']:8.1f}")
    print("\nlatency: one request at a time")
    print(f"{'endpoint':44} {'median ms':>10} {'p95 ms':>8}")
    for label, row in (
        ("raw cursor + orjson (baseline)", raw_serial),
        ("GET /api/customers?per_page=100", list_serial),
        ("GET /api/dashboard/metrics", metrics_serial),
    ):
        print(f"{label:44} {row['median_ms']:10.1f} {row['p95_ms']:8.1f}")
    shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    print(f"\nlist throughput vs baseline: median {ratios[len(ratios) // 2]:.2f}x over {ROUNDS} rounds ({shown})")
    print("  (target >= 0.5x; the table above shows the median round)")
    shown = ", ".join(f"{ratio:.2f}" for ratio in unpaged_ratios)
    print(
        f"unpaged list ({unpaged_rows:,} rows, {UNPAGED_REQUESTS} requests per round) vs baseline: "
        f"median {unpaged_ratios[len(unpaged_ratios) // 2]:.2f}x over {ROUNDS} rounds ({shown}) (target >= 0.5x)"
    )
    print(f"list p95, one at a time: {list_serial['p95_ms']:.1f} ms (target < 50 ms)")
    print(f"dashboard metrics median, one at a time: {metrics_serial['median_ms']:.1f} ms (target <= 100 ms)")


if __name__ == "__main__":
    main()
