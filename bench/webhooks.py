"""Benchmark: signed Segment-style events posted by concurrent clients on loopback through the real
ASGI server (uvicorn), processed by a real Celery worker over Redis.

    make bench-webhooks                        # 5,000 events, 32 clients
    BENCH_EVENTS=20000 BENCH_CLIENTS=64 make bench-webhooks

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/churnshield_bench_webhooks)
and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14). Prints accept latency (median,
p99), accepted events per second, and the time from the last accept until every event is
applied (target: >= 500 events/s, p99 <= 100 ms, all applied within 30 s of the last one).
"""

import asyncio
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, ROOT, BenchDatabase

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_bench_webhooks")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "2000"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "5000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
WEB_WORKERS = os.environ.get("BENCH_WEB_WORKERS", "2")
SECRET = "bench-segment-secret"
DB = BenchDatabase(DATABASE_URL, CUSTOMERS, activity_scale=0.01)
ENV = {
    **DB.env,
    "REDIS_URL": REDIS_URL,
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "DB_POOL_MAX_SIZE": "8",
}


def setup_integration() -> tuple[int, list[str]]:
    code = (
        "import json\n"
        "from integrations.models import Integration, WebhookEvent\n"
        "from customers.models import Customer\n"
        "i, _ = Integration.objects.update_or_create(name='bench-segment', defaults={'type': 'analytics', "
        f"'status': 'connected', 'config': {{'provider': 'segment', 'signing_secret': '{SECRET}'}}}})\n"
        "WebhookEvent.objects.filter(integration=i).delete()\n"
        "print(json.dumps([i.pk, list(Customer.objects.order_by('id').values_list('email', flat=True)[:500])]))"
    )
    pk, emails = json.loads(DB.manage("shell", "-c", code).strip().splitlines()[-1])
    return pk, emails


def processed_count(integration_id: int) -> int:
    return int(
        DB.psql(f"SELECT count(*) FROM webhook_events WHERE integration_id={integration_id} AND status='processed'")
    )


async def post_all(base: str, integration_id: int, emails: list[str], run_id: str) -> tuple[list[float], float]:
    rng = random.Random(1)
    bodies = []
    for n in range(EVENTS):
        kind = rng.choice(["track", "track", "page"])
        event = {
            "messageId": f"{run_id}-{n}",
            "type": kind,
            "event": rng.choice(["Report Built", "Dashboard Viewed", "Export"]) if kind == "track" else None,
            "userId": f"u{n % 3000}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "context": {"traits": {"email": emails[n % len(emails)]}},
        }
        body = json.dumps(event).encode()
        bodies.append((body, hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()))
    latencies: list[float] = []
    errors = 0
    path = f"/api/webhooks/segment/{integration_id}"
    host, port = base.removeprefix("http://").split(":")
    queue = list(reversed(bodies))

    async def client() -> None:
        """One keep-alive connection; a lean HTTP/1.1 client so the load generator costs little CPU.

        Like a provider, it resends a delivery whose connection broke (counted as an error)."""
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        while queue:
            body, signature = queue.pop()
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"X-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                await reader.readexactly(length)
            except (ConnectionError, asyncio.IncompleteReadError):
                errors += 1
                queue.append((body, signature))
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
                continue
            latencies.append(time.perf_counter() - started)
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                raise SystemExit(f"HTTP {status}")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  ({errors} broken connections, resent)")
    return latencies, elapsed


def main() -> None:
    DB.prepare()
    integration_id, emails = setup_integration()
    port = 18000 + random.randrange(1000)
    web = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            "churnshield.asgi:application",
            "--port",
            str(port),
            "--workers",
            WEB_WORKERS,
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=ENV,
    )
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=ENV,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(f"{base}/signin", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        asyncio.run(post_all(base, integration_id, emails, f"warm{time.time_ns()}"))  # warm-up round
        deadline = time.monotonic() + 120
        while processed_count(integration_id) < EVENTS and time.monotonic() < deadline:
            time.sleep(0.2)
        DB.psql(f"DELETE FROM webhook_events WHERE integration_id={integration_id}")
        latencies, elapsed = asyncio.run(post_all(base, integration_id, emails, f"run{time.time_ns()}"))
        last_accept = time.monotonic()
        while processed_count(integration_id) < EVENTS and time.monotonic() - last_accept < 300:
            time.sleep(0.05)
        applied_after = time.monotonic() - last_accept
        applied = processed_count(integration_id)
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            process.wait(timeout=20)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    rate = EVENTS / elapsed
    print(f"\n{EVENTS:,} signed Segment events, {CLIENTS} concurrent clients, uvicorn x{WEB_WORKERS}, 1 Celery worker")
    print(f"accept latency: median {statistics.median(latencies) * 1000:.1f} ms, p99 {p99:.1f} ms (target <= 100 ms)")
    print(f"accepted: {rate:.0f} events/s (target >= 500)")
    print(f"applied: {applied:,}/{EVENTS:,}, all {applied_after:.1f} s after the last accept (target <= 30 s)")


if __name__ == "__main__":
    main()
