"""X2 (Redis killed and restarted) and X3 (PostgreSQL backends terminated, cluster restarted),
against a full stack on private services: uvicorn, a Celery worker and a locked beat.

/readyz must answer promptly (never hang) with 503 while a dependency is down, return to 200
once it is back, and the worker must process tasks again (no stuck connection).
"""

import time

import httpx
import pytest
from celery import Celery

from tests.faults.conftest import celery_cmd, fault_env
from tests.faults.harness import manage, wait_until
from tests.live.conftest import VENV_BIN, free_port

pytestmark = pytest.mark.live

SEED_ROWS = """
import datetime as dt
from predictions.models import ModelVersion, PredictionRun
from monitoring.tests.factories import make_batch_run, make_champion

PredictionRun.objects.all().delete()
ModelVersion.objects.all().delete()
make_batch_run(make_champion("x-rules-1"), finished_ago=dt.timedelta(hours=1))
"""


@pytest.fixture
def stack(private_pg, private_redis, spawn):
    manage(private_pg.url, "shell", "-c", SEED_ROWS)
    env = fault_env(
        private_pg,
        private_redis,
        REDIS_URL=private_redis.url,
        CELERY_TASK_ALWAYS_EAGER="false",
        BEAT_LOCK_TTL_SECONDS="6",
        READYZ_BEAT_MAX_AGE_SECONDS="20",
        DB_POOL_MIN_SIZE="1",
    )
    port = free_port()
    spawn(
        [str(VENV_BIN / "uvicorn"), "churnshield.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        "faults-uvicorn",
    )
    spawn(
        celery_cmd("churnshield", "worker", "--pool", "solo", "-n", "stack@%h", "--loglevel", "INFO"),
        env,
        "faults-stack-worker",
    )
    spawn(
        celery_cmd("churnshield", "beat", "--scheduler", "monitoring.beat:LockedDatabaseScheduler",
                   "--max-interval", "2", "-s", str(private_pg.dir.parent / "stack.schedule"), "--loglevel", "INFO"),
        env,
        "faults-stack-beat",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: ready(base)[0] == 200, timeout=90, interval=0.5)
    return base


def ready(base: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        response = httpx.get(f"{base}/readyz", timeout=15)
        return response.status_code, response.json(), time.monotonic() - started
    except httpx.HTTPError:
        return 0, {}, time.monotonic() - started


def run_task(redis_url: str) -> None:
    """A real task on the stack's worker that writes to the database (GuardedTask's attempt row)."""
    client = Celery("probe", broker=redis_url, backend=redis_url, set_as_current=False)
    client.send_task("churnshield.tasks.flush_expired_tokens").get(timeout=30)


def poll_until(base: str, predicate, timeout: float) -> tuple[float, list[tuple[int, float]]]:
    """Poll /readyz until `predicate(status, body)`; returns when the first request that satisfied it
    was SENT (a request in flight during the outage may wait out its check's timeout: that is not
    recovery time) and every (status, latency)."""
    started, seen = time.monotonic(), []
    while True:
        sent = time.monotonic()
        status, body, latency = ready(base)
        seen.append((status, latency))
        if predicate(status, body):
            return sent - started, seen
        assert time.monotonic() - started < timeout, f"not reached in {timeout}s; last {status} {body}"
        time.sleep(0.2)


def test_x2_redis_killed_and_restarted(stack, private_redis):
    private_redis.kill()
    to_503, seen = poll_until(stack, lambda status, body: status == 503, timeout=20)
    _, body, _ = ready(stack)
    assert body["checks"]["redis"]["status"] == "error" and body["checks"]["database"]["status"] == "ok"
    time.sleep(5)
    private_redis.start()  # same port, empty (no persistence, like the shared Redis)
    recovered, seen_after = poll_until(stack, lambda status, body: status == 200, timeout=60)
    run_task(private_redis.url)
    worst = max(latency for _, latency in seen + seen_after)
    print(
        f"X2: readyz 503 after {to_503:.1f}s, 200 again {recovered:.1f}s after Redis came back,"
        f" slowest readyz {worst:.2f}s"
    )
    assert worst < 4  # never hangs: every client call has a timeout
    assert recovered <= 30


def test_x3_postgres_backends_terminated_then_cluster_restarted(stack, private_pg, private_redis):
    # (a) every backend of the app database terminated, except ours.
    private_pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = 'churnshield' AND pid <> pg_backend_pid()"
    )
    started = time.monotonic()
    statuses = [ready(stack)[0] for _ in range(10)]
    run_task(private_redis.url)  # the worker's pooled connection was killed too
    print(f"X3a: readyz after pg_terminate_backend: {statuses} ({time.monotonic() - started:.1f}s)")
    assert statuses.count(200) == len(statuses)  # the pool's health check hides the drop

    # (b) fast restart of the cluster.
    private_pg.stop()
    to_503, seen = poll_until(stack, lambda status, body: status == 503, timeout=20)
    _, body, _ = ready(stack)
    assert body["checks"]["database"]["status"] == "error"
    private_pg.start()
    recovered, seen_after = poll_until(stack, lambda status, body: status == 200, timeout=30)
    run_task(private_redis.url)
    worst = max(latency for _, latency in seen + seen_after)
    print(
        f"X3b: readyz 503 after {to_503:.1f}s; 200 again {recovered:.1f}s after PostgreSQL came back;"
        f" slowest {worst:.2f}s"
    )
    assert recovered <= 5 and worst < 4
