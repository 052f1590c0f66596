"""C1 (SIGKILL of a worker's child) and X1 (SIGKILL of a whole worker group) from docs/reliability.md,
on a private Redis broker and a private PostgreSQL, with real prefork workers killed by PID.

Scaled for a shared 2-core machine: 150 tasks of 30–150 ms on 2 workers, 3 kills each run. Each
guarded run asserts 0 lost and 0 double-applied; each control run must show the loss the
setting prevents (that is what proves the test can fail).
"""

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from types import SimpleNamespace

import psutil
import pytest
from celery import Celery

from tests.faults.conftest import celery_cmd, fault_env
from tests.faults.harness import wait_until

pytestmark = pytest.mark.live

SEED = int(os.environ.get("FAULT_SEED", "20261125"))
N_TASKS = 150
KILLS = 3


def start_worker(spawn, env, name):
    return spawn(
        celery_cmd(
            "tests.faults.fault_app", "worker", "--pool", "prefork", "--concurrency", "1", "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
        ),
        env,
        f"faults-{name}",
    )  # fmt: skip


def send_all(broker, prefix: str, rng: random.Random) -> list[str]:
    producer = Celery("producer", broker=broker if isinstance(broker, str) else broker.url, set_as_current=False)
    events = [f"{prefix}-{i}" for i in range(N_TASKS)]
    for event_id in events:
        producer.send_task("faults.effect", args=[event_id, rng.randint(30, 150)])
    return events


def keep_backlog(redis, events: list[str], prefix: str, rng: random.Random, minimum: int = 40) -> None:
    """Top the queue up before a kill, so a slow restart on a loaded machine cannot let the
    survivors drain it first (then there is nothing in flight to kill)."""
    if redis.client().llen("celery") >= minimum:
        return
    producer = Celery("producer", broker=redis.url, set_as_current=False)
    start = len(events)
    for i in range(start, start + 50):
        events.append(f"{prefix}-{i}")
        producer.send_task("faults.effect", args=[events[-1], rng.randint(30, 150)])


def in_flight(ledger, pid: int) -> list[str]:
    """Event ids this process has started and not yet applied: it is inside a task right now."""
    rows = ledger.execute(
        "SELECT s.event_id FROM fault_started s WHERE s.pid = %s"
        " AND NOT EXISTS (SELECT 1 FROM fault_effect e WHERE e.event_id = s.event_id)",
        (pid,),
    )
    return [row[0] for row in rows]


def unacked_events(redis) -> set[str]:
    """Event ids whose messages the broker still holds as delivered but unacknowledged."""
    events = set()
    for raw in redis.client().hvals("unacked"):
        message = json.loads(raw)[0]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        events.add(json.loads(body)[0][0])
    return events


def started_by(ledger, pids: list[int]) -> set[str]:
    """Every event id these processes started. A killed process may have finished the sampled task
    and begun (and, acking early, lost) the next one between the sample and the kill."""
    return {row[0] for row in ledger.execute("SELECT event_id FROM fault_started WHERE pid = ANY(%s)", (pids,))}


def pool_child(worker, dead: set[int], ledger) -> psutil.Process:
    """The worker's live pool process (not one we already killed and billiard has not reaped yet):
    a child that has started one of the tasks. While the worker boots, a helper it runs (ctypes'
    `ldconfig -p`, platform's `uname`) is a child for a moment, with the worker's own command line
    between its fork and its exec: picked, it never runs a task and the wait for one in flight
    times out."""

    def live():
        ran = {row[0] for row in ledger.execute("SELECT DISTINCT pid FROM fault_started")}
        for child in psutil.Process(worker.pid).children():
            try:
                if child.pid in ran and child.pid not in dead and child.status() != psutil.STATUS_ZOMBIE:
                    return child
            except psutil.Error:  # gone meanwhile
                continue
        return None

    return wait_until(live, timeout=30)


def group_pids(worker) -> list[int]:
    """Every process of a worker (main and children, however started), read just before it is
    killed: what the kill takes down is what it had in hand, whichever of them ran it."""
    main = psutil.Process(worker.pid)
    return [main.pid, *(child.pid for child in main.children(recursive=True))]


def counts(ledger, events: list[str]) -> dict:
    applied = {row[0] for row in ledger.execute("SELECT event_id FROM fault_effect")}
    doubles = ledger.execute("SELECT event_id FROM fault_effect_log GROUP BY event_id HAVING count(*) > 1")
    return {"lost": sorted(set(events) - applied), "double": [row[0] for row in doubles], "applied": len(applied)}


def recovery_seconds(ledger, killed: dict[str, float]) -> dict[str, float]:
    rows = ledger.execute("SELECT event_id, ts FROM fault_effect WHERE event_id = ANY(%s)", (list(killed),))
    return {event_id: ts.timestamp() - killed[event_id] for event_id, ts in rows}


def drained(redis) -> bool:
    client = redis.client()
    return client.llen("celery") == 0 and client.hlen("unacked") == 0


def settle(ledger, redis, timeout: float) -> None:
    """Wait until the broker is empty and no effect has been added for 2 s (control runs)."""
    last = [-1, time.monotonic()]

    def quiet() -> bool:
        applied = ledger.execute("SELECT count(*) FROM fault_effect")[0][0]
        if applied != last[0]:
            last[:] = [applied, time.monotonic()]
        return drained(redis) and time.monotonic() - last[1] > 2

    wait_until(quiet, timeout=timeout, interval=0.2)


@pytest.mark.parametrize("guarded", [True, False], ids=["reject-on-worker-lost+guard", "control"])
def test_c1_child_sigkill_loses_nothing_and_applies_once(guarded, ledger, private_redis, spawn):
    rng = random.Random(SEED)
    env = fault_env(ledger, private_redis, FAULT_GUARDED="1" if guarded else "0")
    workers = [start_worker(spawn, env, f"c1-{guarded}-{i}") for i in range(2)]
    events = send_all(private_redis, f"c1-{guarded}", rng)

    killed: dict[str, float] = {}
    killed_pids: list[int] = []
    dead: set[int] = set()
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.2))
        keep_backlog(private_redis, events, f"c1-{guarded}", rng)
        child = pool_child(rng.choice(workers), dead, ledger)
        dead.add(child.pid)
        victims = wait_until(lambda child=child: in_flight(ledger, child.pid), timeout=60, interval=0.005)
        os.kill(child.pid, signal.SIGKILL)
        killed.update(dict.fromkeys(victims, time.time()))
        killed_pids.append(child.pid)

    if guarded:
        wait_until(lambda: counts(ledger, events)["applied"] == len(events), timeout=90, interval=0.2)
    else:
        settle(ledger, private_redis, timeout=90)
    result = counts(ledger, events)
    print(f"C1 seed={SEED} guarded={guarded} kills={KILLS} killed={sorted(killed)} lost={result['lost']}")
    assert result["double"] == []
    if guarded:
        assert result["lost"] == []
        starts = dict(ledger.execute("SELECT event_id, count(*) FROM fault_started GROUP BY event_id"))
        for event_id in killed:
            assert starts[event_id] >= 2, f"{event_id} was killed but never redelivered"
        delays = recovery_seconds(ledger, killed)
        print(f"C1 killed task completed again after {max(delays.values()):.1f}s at most")
        assert max(delays.values()) < 30
        attempts = dict(ledger.execute("SELECT task_id, attempts FROM monitoring_task_attempts WHERE attempts > 1"))
        assert len(attempts) >= len(killed) and max(attempts.values()) <= 3
    else:
        # Celery's documented behaviour without reject_on_worker_lost: the killed task is acked, lost.
        assert result["lost"] and set(result["lost"]) <= started_by(ledger, killed_pids)


@pytest.mark.parametrize("acks_late", [True, False], ids=["acks_late", "control-early-ack"])
def test_x1_whole_worker_sigkill_loses_nothing_with_late_acks(acks_late, ledger, private_redis, spawn):
    rng = random.Random(SEED + 1)
    vt = 8
    env = fault_env(ledger, private_redis, FAULT_VT=str(vt), FAULT_ACKS_LATE="1" if acks_late else "0")
    workers = [start_worker(spawn, env, f"x1-{acks_late}-{i}") for i in range(2)]
    events = send_all(private_redis, f"x1-{acks_late}", rng)

    killed: dict[str, float] = {}
    killed_pids: list[int] = []
    for n in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.2))
        keep_backlog(private_redis, events, f"x1-{acks_late}", rng)
        index = rng.randrange(len(workers))
        child = pool_child(workers[index], set(), ledger)
        if acks_late:
            victims = wait_until(lambda child=child: in_flight(ledger, child.pid), timeout=60, interval=0.005)
        else:
            # The control shows what an early ack loses, so it kills once the worker's main process
            # has acked the running task (it does so just after the child starts it; on a loaded
            # machine a kill could otherwise land in between, and the message would come back).
            def acked_in_flight(child=child) -> list[str]:
                running = in_flight(ledger, child.pid)
                return running and [event for event in running if event not in unacked_events(private_redis)]

            victims = wait_until(acked_in_flight, timeout=60, interval=0.005)
        killed_pids += group_pids(workers[index])
        os.killpg(workers[index].pid, signal.SIGKILL)  # the machine-lost case: main process and children
        workers[index].wait()
        killed.update(dict.fromkeys(victims, time.time()))
        time.sleep(2)
        workers[index] = start_worker(spawn, env, f"x1-{acks_late}-{index}-r{n}")

    if acks_late:
        # Redis returns a dead worker's unacked messages after the visibility timeout.
        wait_until(lambda: counts(ledger, events)["applied"] == len(events), timeout=vt + 60, interval=0.2)
        delays = recovery_seconds(ledger, killed)
        print(f"X1 unacked messages of killed workers completed {max(delays.values()):.1f}s after the kill at most")
        # The bound docs/reliability.md promises: visibility timeout + restore cadence (1 s here) + 30 s.
        assert set(delays) == set(killed) and max(delays.values()) < vt + 1 + 30
    else:
        settle(ledger, private_redis, timeout=vt + 60)
    result = counts(ledger, events)
    print(f"X1 seed={SEED + 1} acks_late={acks_late} killed={sorted(killed)} lost={result['lost']}")
    assert result["double"] == []
    if acks_late:
        assert result["lost"] == []
    else:
        # Early acks lose what the kill interrupted: the tasks in flight at each kill, acked already.
        # (One may have finished between the check and the kill, so not every one.) Losses beyond
        # them are printed, not asserted: with early acks a task that fails for any other reason is
        # lost too, and "lost nothing" is the guarded run's assertion. Behind PgBouncer two runs
        # lost one more task, started by a process outside the killed worker; its cause is not known.
        assert set(result["lost"]) & set(killed), f"early acks lost no interrupted task: killed={sorted(killed)}"
        beyond = sorted(set(result["lost"]) - set(killed))
        if beyond:
            starts = ledger.execute("SELECT event_id, pid FROM fault_started WHERE event_id = ANY(%s)", (beyond,))
            print(f"X1 control also lost {beyond}; started by (event, pid): {starts}; killed pids {killed_pids}")


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A vhost of our own on the machine's RabbitMQ (never restarted), removed afterwards."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    vhost = f"churnshield-faults-{os.getpid()}"

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([rabbitmqctl, *args], capture_output=True, text=True, timeout=60)  # type: ignore[list-item]

    if rabbitmqctl is None or ctl("add_vhost", vhost).returncode != 0:
        if os.environ.get("CHURNSHIELD_REQUIRE_SERVICES"):
            pytest.fail("X1 on RabbitMQ needs rabbitmqctl and the RabbitMQ at 127.0.0.1:5672")
        pytest.skip("needs rabbitmqctl and the RabbitMQ at 127.0.0.1:5672")
    try:
        assert ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*").returncode == 0
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        ctl("delete_vhost", vhost)


def test_x1_whole_worker_sigkill_on_rabbitmq_redelivers_at_once(ledger, rabbitmq_vhost, spawn):
    """X1 with RabbitMQ as the broker: a killed worker's connection closes with it, so RabbitMQ
    requeues its unacknowledged message at once (no visibility timeout): 0 lost, 0 double, and
    every killed task completed again within 30 s of its kill."""
    rng = random.Random(SEED + 2)
    env = fault_env(ledger, SimpleNamespace(url=rabbitmq_vhost))  # type: ignore[arg-type]
    workers = [start_worker(spawn, env, f"x1-amqp-{i}") for i in range(2)]
    events = send_all(rabbitmq_vhost, "x1-amqp", rng)

    killed: dict[str, float] = {}
    killed_pids: list[int] = []
    for n in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.2))
        index = rng.randrange(len(workers))
        child = pool_child(workers[index], set(), ledger)
        victims = wait_until(lambda child=child: in_flight(ledger, child.pid), timeout=20, interval=0.005)
        os.killpg(workers[index].pid, signal.SIGKILL)
        workers[index].wait()
        killed.update(dict.fromkeys(victims, time.time()))
        killed_pids.append(child.pid)
        time.sleep(2)
        workers[index] = start_worker(spawn, env, f"x1-amqp-{index}-r{n}")

    wait_until(lambda: counts(ledger, events)["applied"] == N_TASKS, timeout=90, interval=0.2)
    result = counts(ledger, events)
    delays = recovery_seconds(ledger, killed)
    print(
        f"X1 RabbitMQ seed={SEED + 2} killed={sorted(killed)} lost={result['lost']} double={result['double']}"
        f" redelivered and completed {max(delays.values()):.1f}s after the kill at most"
    )
    assert result["lost"] == [] and result["double"] == []
    assert set(delays) == set(killed) and max(delays.values()) <= 30
