"""RELIABILITY X5 for playbooks: skewed processes against the database scheduler, under `faketime`.

A worker runs the executions with its clock 10 minutes off, beat (django-celery-beat's database
scheduler) runs 10 minutes behind and sends the claim every second, and the claim itself runs in a
worker skewed the other way. Due times and leases are the database's clock, so each wait falls due
3 s after it started by that clock, runs exactly once, never before its due time, and promptly.

With the processes' own clocks (the code before this test), the writer's and the claimer's clocks
disagree by 20 minutes: waits written at +10 min and claimed at -10 min run 20 minutes late (the
test times out), and waits written at -10 min and claimed at +10 min run at once, before they are
due, and every lease such a writer takes reads as long expired to the claimer (double claims).
"""

import datetime as dt
import glob
import os

import pytest
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from alerts.models import Alert
from churnshield.celery import app
from interventions.models import Intervention
from playbooks import services
from playbooks.engine import db_now
from playbooks.models import PlaybookExecution, PlaybookStepRun
from tests.live.conftest import ROOT, VENV_BIN, eventually, service_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 3
CUSTOMERS = 12
CLAIM_QUEUE = "pb-skew-claim"
STEPS = [
    {"key": "task", "type": "create_intervention", "intervention_type": "Skew call"},
    {"key": "wait", "type": "wait", "duration": f"{WAIT_SECONDS}s"},
    {"key": "alert", "type": "create_alert", "title": "after the wait", "message": "m"},
]


def libfaketime() -> str:
    """Debian's libfaketime (package faketime). Preloaded directly rather than through the `faketime`
    wrapper, which forks: stopping the wrapper by PID would leave the skewed worker running."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        if os.environ.get("CHURNSHIELD_REQUIRE_SERVICES"):
            pytest.fail("libfaketime is required in CI (.ci/run installs Debian's faketime)")
        pytest.skip("needs libfaketime (apt-get install faketime)")
    return found[0]


def skewed(start_process, offset: str, args: list[str], env: dict[str, str], name: str):
    """A celery process whose clocks are `offset` off. Its monotonic clock moves with the wall clock:
    with FAKETIME_DONT_FAKE_MONOTONIC, Python 3.13's time.sleep (an absolute monotonic
    clock_nanosleep) fails with EINVAL under libfaketime 0.9.10."""
    env = {**env, "LD_PRELOAD": libfaketime(), "FAKETIME": offset}
    return start_process([str(VENV_BIN / "celery"), "-A", "churnshield", *args], env, name)


@pytest.mark.parametrize(
    ("runner_offset", "claimer_offset"),
    [("+10m", "-10m"), ("-10m", "+10m")],
    ids=["runner-ahead-claimer-behind", "runner-behind-claimer-ahead"],
)
def test_skewed_worker_and_beat_run_each_due_step_once_on_the_database_clock(
    start_process, redis_url, make_customer, tmp_path, runner_offset, claimer_offset
):
    if connection.vendor != "postgresql":
        pytest.skip("the embedded SQLite database has no clock of its own (it reads its process's)")
    libfaketime()
    playbook = services.playbook_upsert(name="Skew playbook", data={"steps": STEPS})[0]
    customers = [make_customer() for _ in range(CUSTOMERS)]
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    # Last run long ago: django-celery-beat counts the first interval from the row's own stamps, which
    # this (unskewed) process writes; a beat 10 min behind would otherwise wait 10 min to start.
    PeriodicTask.objects.create(
        name="pb-skew-claim", task="playbooks.tasks.claim_due_executions", interval=every, queue=CLAIM_QUEUE,
        last_run_at=db_now() - dt.timedelta(days=1),
    )  # fmt: skip
    # Short leases: a lease read on the wrong clock would expire at once and be claimed twice.
    env = service_env(
        REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false", PLAYBOOK_LEASE_SECONDS="5",
        PLAYBOOK_CLAIM_FOLLOW_SECONDS="0.8",
    )  # fmt: skip
    worker = ["worker", "--pool", "solo", "--loglevel", "INFO", "--without-heartbeat", "--without-gossip",
              "--without-mingle"]  # fmt: skip
    skewed(start_process, runner_offset, [*worker, "-Q", "celery", "-n", "pb-skew-runner@%h"], env, "pb-skew-runner")
    skewed(
        start_process, claimer_offset, [*worker, "-Q", CLAIM_QUEUE, "-n", "pb-skew-claimer@%h"], env, "pb-skew-claimer"
    )
    skewed(
        start_process, "-10m", ["beat", "--max-interval", "1", "-s", str(tmp_path / "beat"), "--loglevel", "INFO"],
        env, "pb-skew-beat",
    )  # fmt: skip
    try:
        app.conf.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False)

        def up() -> bool:  # both workers consuming, and beat has sent (and saved) a claim
            logs = [(ROOT / ".pytest-logs" / f"pb-skew-{name}.log").read_text() for name in ("runner", "claimer")]
            sent = PeriodicTask.objects.get(name="pb-skew-claim").total_run_count
            return all(" ready." in log for log in logs) and sent > 0

        eventually(up, timeout=60, interval=0.2)
        enrolled_at = db_now()
        services.enrol(playbook=playbook, customer_ids=[c.pk for c in customers], trigger="bulk")

        # Until every wait is over: watch the database's clock and the alerts after the waits.
        first_seen: dict[int, object] = {}

        def all_done() -> bool:
            now = db_now()
            for customer_id in Alert.objects.filter(title="after the wait").values_list("customer_id", flat=True):
                first_seen.setdefault(customer_id, now)
            return PlaybookExecution.objects.filter(playbook=playbook, status="completed").count() == CUSTOMERS

        # 3 s waits + claim every second: done well within 30 s unless a clock is read wrongly.
        eventually(all_done, timeout=30, interval=0.1)
        finished_by = db_now()

        waits = {run.execution.customer_id: run for run in PlaybookStepRun.objects.filter(step_key="wait")}
        assert len(waits) == CUSTOMERS
        for customer_id, wait in waits.items():
            # Due = the database's clock at the wait's start + 3 s (not a skewed worker's clock).
            assert enrolled_at <= wait.started_at <= finished_by
            assert wait.due_at == wait.started_at + dt.timedelta(seconds=WAIT_SECONDS)
            # Ran at or after its due time by the database's clock, and promptly (claim every 1 s).
            assert wait.output["outcome"] == "elapsed" and wait.finished_at >= wait.due_at
            assert 0 <= wait.output["lagSeconds"] < 15
            assert first_seen[customer_id] >= wait.due_at
        # Each step's effect exactly once; no execution claimed twice into a second attempt.
        assert Intervention.objects.filter(customer__in=customers).count() == CUSTOMERS
        assert Alert.objects.filter(title="after the wait").count() == CUSTOMERS
        assert PlaybookStepRun.objects.filter(execution__playbook=playbook).count() == 3 * CUSTOMERS
        assert set(PlaybookStepRun.objects.values_list("attempts", flat=True)) == {1}
    finally:
        app.conf.update(task_always_eager=True)
