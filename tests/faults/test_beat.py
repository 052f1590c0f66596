"""B1(a): two beat processes, one lock: each 2 s tick is sent once, and the standby takes over
when the holder is SIGKILLed. The control (two plain DatabaseSchedulers) shows the duplicates."""

import itertools
import json
import threading
import time

import pytest

from tests.faults.conftest import celery_cmd, fault_env
from tests.faults.harness import manage, wait_until

pytestmark = pytest.mark.live

INTERVAL = 2
TTL = 6
SETUP = f"""
from django_celery_beat.models import IntervalSchedule, PeriodicTask

PeriodicTask.objects.all().delete()
every, _ = IntervalSchedule.objects.get_or_create(every={INTERVAL}, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.create(name="b1-tick", task="faults.tick", interval=every)
"""


class Dispatches:
    """Pops every message beat publishes and records when it arrived."""

    def __init__(self, redis) -> None:
        self.client = redis.client()
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.client.blpop(["celery"], timeout=0.5)
            if item and json.loads(item[1])["headers"]["task"] == "faults.tick":
                self.times.append(time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[float]:
        return [t for t in self.times if start <= t < end]


def start_beat(spawn, env, tmp_path, name, scheduler):
    return spawn(
        celery_cmd(
            "churnshield", "beat", "--scheduler", scheduler, "--max-interval", "1",
            "-s", str(tmp_path / f"{name}.schedule"), "--loglevel", "INFO",
        ),
        env,
        f"faults-{name}",
    )  # fmt: skip


@pytest.fixture
def interval_task(private_pg):
    manage(private_pg.url, "shell", "-c", SETUP)
    yield
    manage(
        private_pg.url,
        "shell",
        "-c",
        "from django_celery_beat.models import PeriodicTask; PeriodicTask.objects.all().delete()",
    )


def test_b1_control_two_plain_beats_send_every_tick_twice(interval_task, private_pg, private_redis, spawn, tmp_path):
    env = fault_env(private_pg, private_redis, REDIS_URL=private_redis.url)
    dispatches = Dispatches(private_redis)
    try:
        scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
        for i in range(2):
            start_beat(spawn, env, tmp_path, f"b1-plain-{i}", scheduler)
        wait_until(lambda: len(dispatches.times) >= 2, timeout=40)
        time.sleep(6)
        start = time.monotonic() - 10
        window = dispatches.between(start, time.monotonic())
    finally:
        dispatches.stop()
    gaps = [b - a for a, b in itertools.pairwise(window)]
    print(f"B1 control: {len(window)} dispatches in 10 s, smallest gap {min(gaps):.2f}s")
    assert min(gaps) < 0.5  # duplicates: the documented two-beats failure


def test_b1_locked_beats_send_each_tick_once_and_fail_over(interval_task, private_pg, private_redis, spawn, tmp_path):
    env = fault_env(private_pg, private_redis, REDIS_URL=private_redis.url, BEAT_LOCK_TTL_SECONDS=str(TTL))
    scheduler = "monitoring.beat:LockedDatabaseScheduler"
    dispatches = Dispatches(private_redis)
    try:
        beats = [start_beat(spawn, env, tmp_path, f"b1-locked-{i}", scheduler) for i in range(2)]
        # Both beats up (the second one idles behind the lock).
        wait_until(lambda: len(dispatches.times) >= 1, timeout=40)
        time.sleep(5)
        phase1_start = time.monotonic()
        time.sleep(16)
        holder = private_redis.client().get("churnshield:beat:lock").decode()
        leader = next(b for b in beats if f":{b.pid}:" in holder)
        killed_at = time.monotonic()
        leader.kill()  # SIGKILL: the lock is never released, it has to expire
        leader.wait()
        time.sleep(16)
        end = time.monotonic()
    finally:
        dispatches.stop()
    phase1 = dispatches.between(phase1_start, killed_at)
    after = dispatches.between(killed_at, end)
    everything = dispatches.between(phase1_start, end)
    gaps = [b - a for a, b in itertools.pairwise(everything)]
    failover_gap = after[0] - max(phase1) if after else float("inf")
    print(
        f"B1 locked: {len(phase1)} dispatches in 16 s (expected 8), smallest gap {min(gaps):.2f}s,"
        f" failover gap {failover_gap:.1f}s (TTL {TTL}s), {len(after)} dispatches in the 16 s after the kill"
    )
    assert abs(len(phase1) - 16 / INTERVAL) <= 1
    assert min(gaps) >= INTERVAL - 0.6  # never two dispatches of one tick
    assert failover_gap <= TTL + 2 * INTERVAL + 1
    assert len(after) >= 3
