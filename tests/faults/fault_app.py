"""A Celery app for fault tests: our real Celery settings (CELERY_* from Django settings) with the
broker and the knobs under test taken from the environment, and one task that writes an effect.

    FAULT_BROKER_URL   the test's private Redis
    FAULT_GUARDED=1    the task uses GuardedTask (reject_on_worker_lost + attempts guard)
    FAULT_ACKS_LATE=0  control runs: early acknowledgement
    FAULT_VT           visibility timeout in seconds
    FAULT_TIME_LIMIT   hard time limit in seconds (default: just under the visibility timeout, as
                       our settings require); C3's control sets it above, to show what it prevents

The effect is kept in a ledger: `fault_started` gets a row per start (committed before
the work), `fault_effect` holds the business effect under a unique key, and `fault_effect_log`
(no unique constraint) a row each time a run actually changed state.
"""

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "churnshield.settings.test")
django.setup()

from celery import Celery, Task  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from monitoring.reliability import GuardedTask  # noqa: E402
from tests.faults.harness import SCHEMA  # noqa: E402, F401  (the ledger tables)

app = Celery("faults")
app.config_from_object("django.conf:settings", namespace="CELERY")
vt = int(os.environ.get("FAULT_VT", "3600"))
time_limit = int(os.environ.get("FAULT_TIME_LIMIT", min(60, vt - 1)))
app.conf.update(
    broker_url=os.environ["FAULT_BROKER_URL"],
    result_backend=None,
    task_always_eager=False,
    task_acks_late=os.environ.get("FAULT_ACKS_LATE", "1") == "1",
    broker_transport_options={"visibility_timeout": vt, "unacked_restore_interval": 1, "unacked_restore_throttle": 1},
    task_time_limit=time_limit,
    task_soft_time_limit=min(time_limit - 1, 50),
)

Base = GuardedTask if os.environ.get("FAULT_GUARDED") == "1" else Task


@app.task(name="faults.effect", base=Base, acks_late=os.environ.get("FAULT_ACKS_LATE", "1") == "1")
def effect(event_id: str, sleep_ms: int) -> None:
    pid = os.getpid()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO fault_started (event_id, pid) VALUES (%s, %s)", [event_id, pid])
    time.sleep(sleep_ms / 1000)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO fault_effect (event_id, pid) VALUES (%s, %s) ON CONFLICT DO NOTHING", [event_id, pid]
        )
        if cursor.rowcount == 1:
            cursor.execute("INSERT INTO fault_effect_log (event_id, pid) VALUES (%s, %s)", [event_id, pid])
