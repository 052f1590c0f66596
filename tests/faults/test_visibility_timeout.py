"""C3 (docs/reliability.md): the Redis visibility timeout against long waits, in compressed time.

A message a worker has taken but not acknowledged is put back on the queue once the visibility
timeout has passed, whether or not the worker is still alive (Celery's Redis caveats). Here the
timeout is 10 s (RELIABILITY: 20 s) and kombu sweeps for such messages every second.

- (a) control: a task with a 20 s countdown is executed more than once (the documented caveat).
- (b) the product's way: a playbook wait due in 25 s is a row in PostgreSQL, claimed by the real
  claimer (playbooks.tasks.claim_due_executions, sent by beat every 5 s) in real workers whose
  settings carry the same 10 s visibility timeout: the step after the wait runs exactly once, on
  time.
- (c) a 15 s task with a time limit above the timeout runs twice, once on the idle second worker
  (second control); with the time limit below the timeout, as our settings require, it is stopped
  by the limit, recorded as failed, and never started again.

Every case runs two real prefork workers (one process each) on a private Redis and PostgreSQL.
"""

import json
import time
import uuid

import pytest
from celery import Celery

from tests.faults.conftest import celery_cmd, fault_env
from tests.faults.harness import manage, wait_until
from tests.live.conftest import ROOT

pytestmark = pytest.mark.live

VT = 10  # seconds: the visibility timeout of every broker in this module
COUNTDOWN = 20  # (a): twice the timeout
LONG_TASK_SECONDS = 15  # (c): 1.5 timeouts, so exactly one redelivery happens while it runs
WAIT_SECONDS = 25  # (b)
CLAIM_EVERY = 5  # (b): beat's claim interval


def start_workers(spawn, env: dict[str, str], app: str, name: str, count: int = 2) -> list:
    workers = []
    for index in range(count):
        log = ROOT / ".pytest-logs" / f"faults-{name}{index}.log"
        log.unlink(missing_ok=True)
        workers.append(
            spawn(
                celery_cmd(
                    app, "worker", "--pool", "prefork", "--concurrency", "1", "-n", f"{name}{index}@%h",
                    "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
                ),
                env,
                f"faults-{name}{index}",
            )
        )  # fmt: skip
    logs = [ROOT / ".pytest-logs" / f"faults-{name}{index}.log" for index in range(count)]
    wait_until(lambda: all(log.exists() and " ready." in log.read_text() for log in logs), timeout=90, interval=0.2)
    return workers


def starts(ledger, event_id: str) -> list[tuple[int, float]]:
    """(pid, epoch seconds) of every start of the event's task, in order."""
    rows = ledger.execute(
        "SELECT pid, extract(epoch FROM ts)::float FROM fault_started WHERE event_id = %s ORDER BY ts", (event_id,)
    )
    return [(pid, ts) for pid, ts in rows]


def test_c3a_control_countdown_longer_than_the_visibility_timeout_runs_more_than_once(ledger, private_redis, spawn):
    env = fault_env(ledger, private_redis, FAULT_VT=str(VT))
    start_workers(spawn, env, "tests.faults.fault_app", "c3a")
    event_id = f"c3a-{uuid.uuid4().hex[:8]}"
    sent_at = time.time()
    producer = Celery("producer", broker=private_redis.url, set_as_current=False)
    producer.send_task("faults.effect", args=[event_id, 0], countdown=COUNTDOWN)

    # The message waits its countdown in a worker's memory, unacknowledged; every 10 s Redis hands a
    # copy to the other (idle) worker, and at the due time each copy runs.
    wait_until(lambda: len(starts(ledger, event_id)) >= 2, timeout=COUNTDOWN + 40, interval=0.2)
    time.sleep(3)  # copies a moment behind
    runs = starts(ledger, event_id)
    print(f"C3(a) countdown {COUNTDOWN}s, visibility timeout {VT}s: executed {len(runs)} times,"
          f" {[round(ts - sent_at, 1) for _, ts in runs]} s after sending")  # fmt: skip
    assert len(runs) > 1
    # Each one a due copy, not an early run. Which worker runs a redelivered copy is the broker's
    # choice (the idle one usually; the same one too, when it asks first), so it is not asserted.
    assert all(ts >= sent_at + COUNTDOWN - 1 for _, ts in runs)


PLAYBOOK_SETUP = """
import datetime as dt, json
from decimal import Decimal
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from customers.models import Customer
from playbooks import services
from playbooks.engine import db_now

PeriodicTask.objects.all().delete()
every, _ = IntervalSchedule.objects.get_or_create(every={every}, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.create(name="c3-claim", task="playbooks.tasks.claim_due_executions", interval=every,
                            last_run_at=db_now() - dt.timedelta(days=1))
steps = [
    {{"key": "task", "type": "create_intervention", "intervention_type": "C3 call"}},
    {{"key": "wait", "type": "wait", "duration": "{wait}s"}},
    {{"key": "alert", "type": "create_alert", "title": "{title}", "message": "after the wait"}},
]
playbook = services.playbook_upsert(name="{title}", data={{"steps": steps}})[0]
now = db_now()
customer = Customer.objects.create(
    name="C3", email="{title}@example.com", company="C3", plan="Pro", mrr=Decimal("500.00"),
    signup_date=now - dt.timedelta(days=400), last_login=now - dt.timedelta(days=2), health_score=70,
    churn_risk=Decimal("0.2500"), nps_score=8, support_tickets=1, feature_usage={{}},
)
print(json.dumps({{"playbook": playbook.pk, "customer": customer.pk}}))
"""

ENROL = """
from playbooks import services
from playbooks.models import Playbook
print(len(services.enrol(playbook=Playbook.objects.get(pk={playbook}), customer_ids=[{customer}], trigger="bulk",
                         use_holdout=False)))
"""


def test_c3b_playbook_wait_in_the_database_runs_the_next_step_exactly_once_on_time(
    private_pg, private_redis, spawn, tmp_path
):
    title = f"c3b-{uuid.uuid4().hex[:8]}"
    setup = PLAYBOOK_SETUP.format(every=CLAIM_EVERY, wait=WAIT_SECONDS, title=title)
    ids = json.loads(manage(private_pg.url, "shell", "-c", setup).splitlines()[-1])
    # The real app's settings with the compressed visibility timeout (RELIABILITY: the same value
    # for broker and results), kombu's sweep every second, and a claimer that follows the next due
    # time for 2 s (production: 10 s against a 75 min timeout) so a claim never nears the timeout.
    app_env = {
        "REDIS_URL": private_redis.url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_VISIBILITY_TIMEOUT": str(VT),
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "PLAYBOOK_CLAIM_FOLLOW_SECONDS": "2",
        "DB_POOL_MIN_SIZE": "1",
    }
    env = fault_env(private_pg, private_redis, **app_env)
    start_workers(spawn, env, "churnshield", "c3b")
    beat_log = ROOT / ".pytest-logs" / "faults-c3b-beat.log"
    beat_log.unlink(missing_ok=True)
    spawn(
        celery_cmd("churnshield", "beat", "--scheduler", "monitoring.beat:LockedDatabaseScheduler",
                   "--max-interval", "1", "-s", str(tmp_path / "beat.schedule"), "--loglevel", "INFO"),
        env,
        "faults-c3b-beat",
    )  # fmt: skip

    # manage() drops REDIS_URL: the enrolment names the broker directly and hands the execution to it.
    enrolled = manage(
        private_pg.url, "shell", "-c", ENROL.format(**ids),
        CELERY_BROKER_URL=private_redis.url, CELERY_TASK_ALWAYS_EAGER="false",
    )  # fmt: skip
    assert enrolled.strip().endswith("1")
    alert_sql = "SELECT extract(epoch FROM created_at)::float FROM alerts WHERE title = %s"
    wait_until(lambda: private_pg.execute(alert_sql, (title,)), timeout=WAIT_SECONDS + CLAIM_EVERY + 60, interval=0.2)
    # Watch one more visibility timeout and sweep (and a margin): a copy of any message still held
    # would have run by now.
    time.sleep(VT + 5)

    alerts = private_pg.execute(alert_sql, (title,))
    runs = private_pg.execute(
        "SELECT r.step_key, r.status, r.attempts, extract(epoch FROM r.started_at)::float,"
        " extract(epoch FROM r.due_at)::float, extract(epoch FROM r.finished_at)::float"
        " FROM playbook_step_runs r JOIN playbook_executions e ON e.id = r.execution_id"
        " WHERE e.playbook_id = %s ORDER BY r.id",
        (ids["playbook"],),
    )
    interventions = private_pg.execute("SELECT count(*) FROM interventions WHERE customer_id = %s", (ids["customer"],))[
        0
    ][0]
    by_key = {key: (status, attempts, started, due, finished) for key, status, attempts, started, due, finished in runs}
    wait_started, wait_due, wait_finished = by_key["wait"][2:]
    lag = alerts[0][0] - wait_due
    print(f"C3(b) wait of {WAIT_SECONDS}s (due {wait_due - wait_started:.1f}s after it started), claim every "
          f"{CLAIM_EVERY}s, visibility timeout {VT}s: {len(alerts)} alert(s), the step after the wait ran "
          f"{lag:.1f}s after its due time")  # fmt: skip
    assert len(alerts) == 1 and interventions == 1
    assert [key for key, *_ in runs] == ["task", "wait", "alert"]
    assert {status for status, *_ in by_key.values()} == {"succeeded"}
    assert {attempts for _, attempts, *_ in by_key.values()} == {1}
    assert abs(wait_due - wait_started - WAIT_SECONDS) < 0.01
    # On time: never before the due time, at most one claim interval (plus a loaded machine) late.
    assert wait_finished >= wait_due and 0 <= lag <= CLAIM_EVERY + 10


@pytest.mark.parametrize(
    ("time_limit", "guarded"),
    [(60, False), (VT - 1, True)],
    ids=["control-time-limit-above-timeout", "time-limit-below-timeout"],
)
def test_c3c_task_longer_than_the_visibility_timeout(time_limit, guarded, ledger, private_redis, spawn):
    env = fault_env(
        ledger, private_redis, FAULT_VT=str(VT), FAULT_TIME_LIMIT=str(time_limit), FAULT_GUARDED="1" if guarded else "0"
    )
    start_workers(spawn, env, "tests.faults.fault_app", f"c3c{int(guarded)}-")
    event_id = f"c3c-{guarded}-{uuid.uuid4().hex[:8]}"
    result = Celery("producer", broker=private_redis.url, set_as_current=False).send_task(
        "faults.effect", args=[event_id, LONG_TASK_SECONDS * 1000]
    )
    wait_until(lambda: starts(ledger, event_id), timeout=60, interval=0.1)
    first = starts(ledger, event_id)[0][1]
    if guarded:
        # Watch two timeouts: a copy would have started after one (+ the 1 s sweep); nothing does.
        wait_until(lambda: time.time() > first + 2 * VT, timeout=60, interval=0.5)
    else:
        wait_until(lambda: len(starts(ledger, event_id)) >= 2, timeout=VT + 30, interval=0.2)
        # Both runs end (the second one 15 s after it started); nothing starts a third.
        wait_until(lambda: time.time() > starts(ledger, event_id)[1][1] + LONG_TASK_SECONDS + 2, timeout=60)
    runs = starts(ledger, event_id)
    effects = ledger.execute("SELECT count(*) FROM fault_effect_log WHERE event_id = %s", (event_id,))[0][0]
    attempts = ledger.execute(
        "SELECT attempts, status, error FROM monitoring_task_attempts WHERE task_id = %s", (result.id,)
    )
    print(f"C3(c) {LONG_TASK_SECONDS}s task, time limit {time_limit}s, visibility timeout {VT}s: started"
          f" {len(runs)} time(s), at +{[round(ts - first, 1) for _, ts in runs]} s; effects {effects}")  # fmt: skip
    if guarded:
        assert len(runs) == 1 and effects == 0
        # Stopped by the time limit (the soft limit raises inside the task) and recorded as failed.
        assert len(attempts) == 1
        count, status, error = attempts[0]
        assert count == 1 and status == "failed" and "SoftTimeLimitExceeded" in error
    else:
        # The idle worker took the copy Redis put back after the timeout, while the first still ran.
        assert len(runs) == 2 and len({pid for pid, _ in runs}) == 2
        assert VT <= runs[1][1] - first < LONG_TASK_SECONDS
        assert effects == 1  # the ledger's unique key absorbs the second run; an outside call would not
