"""Benchmark: the live alert feed's fan-out through the real ASGI server, against raw Redis pub/sub.

    make bench-ws      # needs PostgreSQL and Redis

1,000 WebSocket clients (CSMs and a few managers, each its own user, cookie-authenticated) connect
to uvicorn with the Redis pub/sub channel layer — the first 500 all at once, every one of which
must succeed. A separate worker process then raises 1,000 alerts through `alert_create`, one
transaction each, as fast as it can, recording each commit's wall-clock time. Every client checks
what it receives against what it may see: each alert must reach its owner and every manager,
exactly once, and no one else. Then the same run replays the worker's send schedule as raw Redis
PUBLISHes (same payload, same fan-out) to 1,000 raw subscribers: the floor for any pub/sub feed.

Prints median/p99 latency from row commit (raw: PUBLISH) to client receipt, deliveries per second,
lost and cross-user deliveries, and ratio = our delivery rate / raw delivery rate (target >= 0.7,
p99 <= 500 ms). BENCH_WS_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/churnshield_wsbench),
BENCH_REDIS_URL (default redis://127.0.0.1:6379/0), BENCH_WS_CLIENTS, BENCH_WS_MANAGERS, BENCH_WS_ALERTS.
"""

import asyncio
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, ROOT, BenchDatabase

DATABASE_URL = os.environ.get("BENCH_WS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_wsbench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CLIENTS = int(os.environ.get("BENCH_WS_CLIENTS", "1000"))
MANAGERS = int(os.environ.get("BENCH_WS_MANAGERS", "10"))
ALERTS = int(os.environ.get("BENCH_WS_ALERTS", "1000"))
BURST = int(os.environ.get("BENCH_WS_BURST", "500"))
SETTLE_SECONDS = 30


class WsBenchDatabase(BenchDatabase):
    """Only users and customers are needed: CLIENTS - MANAGERS CSMs owning one customer each."""

    def prepare(self) -> None:
        name = self.url.rsplit("/", 1)[1]
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname='{name}'", admin=True) != "1":
            self.psql(f"CREATE DATABASE {name}", admin=True)
        self.manage("migrate", "--noinput")


DB = WsBenchDatabase(DATABASE_URL, 0, 0)
ENV = {**DB.env, "REDIS_URL": REDIS_URL, "DB_POOL_MAX_SIZE": "20"}

SETUP = """
import json
from decimal import Decimal
from django.contrib.auth.models import Group, User
from django.utils import timezone
from alerts.models import Alert
from core.auth.tokens import issue_tokens
from customers.models import Customer

csms, managers = {csms}, {managers}
groups = {{name: Group.objects.get(name=name) for name in ("csm", "manager")}}
users = []
for role, count in (("csm", csms), ("manager", managers)):
    for n in range(count):
        name = f"bench-ws-{{role}}-{{n:04d}}"
        user, created = User.objects.get_or_create(username=name, defaults={{"is_staff": True}})
        if created:
            user.groups.add(groups[role])
        users.append((role, user))
owned = {{c.owner_id: c.pk for c in Customer.objects.filter(owner__username__startswith="bench-ws-csm-")}}
now = timezone.now()
Customer.objects.bulk_create([
    Customer(name=f"WS bench {{u.pk}}", email=f"ws-bench-{{u.pk}}@example.com", company="Bench", plan="Pro",
             mrr=Decimal("100"), signup_date=now, owner=u)
    for role, u in users if role == "csm" and u.pk not in owned
])
owned = {{c.owner_id: c.pk for c in Customer.objects.filter(owner__username__startswith="bench-ws-csm-")}}
last = Alert.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
print(json.dumps({{"lastId": last, "users": [
    {{"id": u.pk, "role": role, "access": issue_tokens(u)["access"], "customer": owned.get(u.pk)}} for role, u in users
]}}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- the two producers (run as separate processes) ---------------------------------------------------


def raise_alerts(plan_path: str, out_path: str) -> None:
    """Worker: raise the planned alerts through the service, one transaction each."""
    import django

    django.setup()
    from django.db import transaction

    from alerts.services import alert_create

    plan = json.loads(Path(plan_path).read_text())
    sent: list[dict] = []
    for customer_id in plan["customers"]:
        record: dict = {}
        with transaction.atomic():
            # Registered before alert_create's broadcast, so it runs first, right after COMMIT.
            transaction.on_commit(lambda record=record: record.__setitem__("t", time.time()))
            alert = alert_create(title="Bench alert", message="Risk rose", severity="high", customer_id=customer_id)
        sent.append({"id": alert.pk, "customer": customer_id, "t": record["t"]})
    Path(out_path).write_text(json.dumps(sent))


def publish_raw(plan_path: str, out_path: str) -> None:
    """Baseline: the same messages, fan-out and send schedule as raw Redis PUBLISHes."""
    import redis

    plan = json.loads(Path(plan_path).read_text())
    client = redis.Redis.from_url(REDIS_URL)
    sent, start = [], time.time()
    for item in plan["schedule"]:
        delay = start + item["offset"] - time.time()
        if delay > 0:
            time.sleep(delay)
        t = time.time()
        message = orjson.dumps({"type": "alert", "alert": item["alert"]})
        client.publish(f"bench-raw.user.{item['owner']}", message)
        client.publish("bench-raw.all", message)
        sent.append({"id": item["alert"]["id"], "t": t})
    Path(out_path).write_text(json.dumps(sent))


# --- clients -------------------------------------------------------------------------------------------


class Receipts:
    def __init__(self) -> None:
        self.by_user: dict[int, list[tuple[int, float]]] = {}
        self.count = 0


async def ws_client(url: str, origin: str, user: dict, last_id: int, receipts: Receipts, ready: asyncio.Event):
    from websockets.asyncio.client import connect

    socket_ = await connect(
        url,
        origin=origin,
        additional_headers={"Cookie": f"cs_access={user['access']}"},
        compression=None,
        open_timeout=60,
        max_queue=None,
    )
    await socket_.send(json.dumps({"type": "resume", "lastId": last_id}))
    got = receipts.by_user.setdefault(user["id"], [])

    async def run() -> None:
        async for raw in socket_:
            now = time.time()
            message = orjson.loads(raw)
            if message["type"] == "ready":
                ready.set()
            elif message["type"] == "alert":
                got.append((message["alert"]["id"], now))
                receipts.count += 1

    return socket_, asyncio.create_task(run())


async def raw_client(user: dict, receipts: Receipts, subscribed: list) -> asyncio.Task:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    channel = "bench-raw.all" if user["role"] == "manager" else f"bench-raw.user.{user['id']}"
    await pubsub.subscribe(channel)
    got = receipts.by_user.setdefault(user["id"], [])

    async def run() -> None:
        async for message in pubsub.listen():
            now = time.time()
            if message["type"] != "message":
                subscribed.append(1)
                continue
            got.append((orjson.loads(message["data"])["alert"]["id"], now))
            receipts.count += 1

    return client, asyncio.create_task(run())


async def wait_for(receipts: Receipts, expected: int) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while receipts.count < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # anything extra (a duplicate, a cross-user delivery) would arrive now


def score(users: list[dict], sent: list[dict], owner_of: dict[int, int], receipts: Receipts) -> dict:
    sent_at = {item["id"]: item["t"] for item in sent}
    latencies, lost, cross, duplicated = [], 0, 0, 0
    for user in users:
        expected = set(sent_at) if user["role"] == "manager" else {i for i in sent_at if owner_of[i] == user["id"]}
        # Only this run's alerts (a resume may re-send a previous run's recent ones).
        got = [(i, t) for i, t in receipts.by_user.get(user["id"], []) if i in sent_at]
        ids = [i for i, _ in got]
        duplicated += len(ids) - len(set(ids))
        cross += len(set(ids) - expected)
        lost += len(expected - set(ids))
        latencies += [t - sent_at[i] for i, t in got if i in expected]
    first, last = min(sent_at.values()), max(t for per_user in receipts.by_user.values() for _, t in per_user)
    return {
        "deliveries": len(latencies),
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "rate": len(latencies) / (last - first),
        "lost": lost,
        "cross": cross,
        "duplicated": duplicated,
    }


async def run_ours(base: str, users: list[dict], last_id: int, plan_path: str, out_path: str) -> tuple:
    url, receipts, connected = base.replace("http://", "ws://") + "/ws/alerts", Receipts(), []
    events = [asyncio.Event() for _ in users]

    async def open_one(index: int):
        return await ws_client(url, base, users[index], last_id, receipts, events[index])

    started = time.perf_counter()
    burst = await asyncio.gather(*(open_one(i) for i in range(min(BURST, len(users)))), return_exceptions=True)
    burst_seconds = time.perf_counter() - started
    failures = [r for r in burst if isinstance(r, BaseException)]
    if failures:
        sys.exit(f"burst: {len(failures)} of {len(burst)} simultaneous connects failed, e.g. {failures[0]!r}")
    connected += burst
    rest = await asyncio.gather(*(open_one(i) for i in range(len(burst), len(users))), return_exceptions=True)
    failures = [r for r in rest if isinstance(r, BaseException)]
    if failures:
        sys.exit(f"{len(failures)} of the remaining connects failed, e.g. {failures[0]!r}")
    connected += rest
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), 60)

    worker = await asyncio.create_subprocess_exec(
        str(BIN / "python"), __file__, "--raise", plan_path, out_path, cwd=ROOT, env=ENV
    )
    if await worker.wait():
        sys.exit("the alert-raising worker failed")
    sent = json.loads(Path(out_path).read_text())
    per_alert = 1 + sum(1 for u in users if u["role"] == "manager")
    await wait_for(receipts, len(sent) * per_alert)
    for socket_, task in connected:
        task.cancel()
        await socket_.close()
    return sent, receipts, burst_seconds


async def run_raw(users: list[dict], schedule_path: str, out_path: str) -> tuple:
    receipts, subscribed = Receipts(), []
    clients = await asyncio.gather(*(raw_client(user, receipts, subscribed) for user in users))
    while len(subscribed) < len(users):
        await asyncio.sleep(0.05)
    publisher = await asyncio.create_subprocess_exec(
        str(BIN / "python"), __file__, "--raw", schedule_path, out_path, cwd=ROOT, env=ENV
    )
    if await publisher.wait():
        sys.exit("the raw publisher failed")
    sent = json.loads(Path(out_path).read_text())
    await wait_for(receipts, len(sent) * (1 + sum(1 for u in users if u["role"] == "manager")))
    for client, task in clients:
        task.cancel()
        await client.aclose()
    return sent, receipts


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8 * CLIENTS)), hard))
    DB.prepare()
    output = DB.manage("shell", "-c", SETUP.format(csms=CLIENTS - MANAGERS, managers=MANAGERS))
    setup = json.loads(output.strip().splitlines()[-1])
    users, last_id = setup["users"], setup["lastId"]
    csms = [u for u in users if u["role"] == "csm"]
    rng = random.Random(1)
    plan = {"customers": [rng.choice(csms)["customer"] for _ in range(ALERTS)]}
    owner_of_customer = {u["customer"]: u["id"] for u in csms}

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "uvicorn"), "churnshield.asgi:application", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env={**ENV, "ALLOWED_HOSTS": "127.0.0.1,localhost"},
    )
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        plan_path, ours_out, raw_plan, raw_out = (f"{tmp}/{n}.json" for n in ("plan", "ours", "raw-plan", "raw"))
        Path(plan_path).write_text(json.dumps(plan))
        try:
            for _ in range(150):
                try:
                    httpx.get(f"{base}/signin", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            sent, receipts, burst_seconds = asyncio.run(run_ours(base, users, last_id, plan_path, ours_out))
        finally:
            server.terminate()
            server.wait(timeout=20)
        owner_of = {item["id"]: owner_of_customer[item["customer"]] for item in sent}
        ours = score(users, sent, owner_of, receipts)

        # The baseline replays our worker's schedule with a message of the same shape and size.
        start = sent[0]["t"]
        sample = {
            "title": "Bench alert",
            "description": "Risk rose",
            "severity": "high",
            "isRead": False,
            "createdAt": "2026-01-01T00:00:00.000000Z",
        }
        schedule = [
            {
                "offset": item["t"] - start,
                "owner": owner_of[item["id"]],
                "alert": {"id": item["id"], **sample, "customerId": item["customer"]},
            }
            for item in sent
        ]
        Path(raw_plan).write_text(json.dumps({"schedule": schedule}))
        raw_sent, raw_receipts = asyncio.run(run_raw(users, raw_plan, raw_out))
        raw = score(users, raw_sent, owner_of, raw_receipts)

    span = sent[-1]["t"] - sent[0]["t"]
    print(f"\n{CLIENTS:,} WebSocket clients ({CLIENTS - MANAGERS} CSMs, {MANAGERS} managers), one uvicorn process,")
    print(f"Redis pub/sub channel layer; burst of {min(BURST, CLIENTS)} simultaneous connects: all succeeded")
    print(f"({burst_seconds:.2f} s). {len(sent):,} alerts raised by a worker process in {span:.2f} s.")
    print(f"\n{'':30} {'deliveries':>10} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'deliv/s':>9}")
    print(f"{'':30} {'lost':>10} {'cross-user':>10} {'dup':>8}")
    for label, row in (("ws/alerts (commit -> client)", ours), ("raw Redis pub/sub (baseline)", raw)):
        print(
            f"{label:30} {row['deliveries']:10,} {row['median_ms']:10.1f} {row['p99_ms']:8.1f} {row['max_ms']:8.1f}"
            f" {row['rate']:9.0f}"
        )
        print(f"{'':30} {row['lost']:10} {row['cross']:10} {row['duplicated']:8}")
    ratio = ours["rate"] / raw["rate"]
    print(f"\nratio (delivery rate, ours / raw): {ratio:.2f} (target >= 0.7)")
    print(f"p99 commit -> client: {ours['p99_ms']:.1f} ms (target <= 500 ms)")
    ok = ours["lost"] == 0 and ours["cross"] == 0 and ours["duplicated"] == 0
    print(f"lost / cross-user / duplicated: {ours['lost']} / {ours['cross']} / {ours['duplicated']}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--raise":
        raise_alerts(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "--raw":
        publish_raw(sys.argv[2], sys.argv[3])
    else:
        main()
