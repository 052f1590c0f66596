"""A standby beat that takes over the lock does not re-send what the dead holder already sent.

In process, with two real LockedDatabaseScheduler instances on a private redis-server: the
standby is created first (so its in-memory schedule is stale), the holder sends a due daily task
and dies without releasing the lock, the lock expires, the standby takes over and ticks.
"""

import datetime as dt
import json

import pytest
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from churnshield.celery import app
from monitoring.beat import LockedDatabaseScheduler
from monitoring.selectors import BEAT_LOCK_KEY
from tests.faults.harness import PrivateRedis
from tests.helpers import reset_broker_pools

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    saved = (app.conf.broker_url, app.conf.task_always_eager)
    app.conf.update(broker_url=server.url, task_always_eager=False)
    reset_broker_pools()
    yield server
    app.conf.update(broker_url=saved[0], task_always_eager=saved[1])
    reset_broker_pools()
    server.kill()


def test_standby_taking_over_does_not_resend_what_the_holder_sent(broker):
    PeriodicTask.objects.all().delete()
    # Hourly, not daily: django-celery-beat only loads crontabs whose hour is near the current one.
    hourly, _ = CrontabSchedule.objects.get_or_create(minute="0", hour="*", timezone="UTC")
    PeriodicTask.objects.create(
        name="hourly-probe",
        task="tests.beat_probe",  # not registered here: beat publishes it to the broker
        crontab=hourly,
        last_run_at=timezone.now() - dt.timedelta(hours=2),  # this hour's run is due
    )
    client = broker.client()

    def probes_sent() -> int:
        # Only ours: beat may also send its own default entries (celery.backend_cleanup).
        return sum(json.loads(raw)["headers"]["task"] == "tests.beat_probe" for raw in client.lrange("celery", 0, -1))

    with override_settings(REDIS_URL=broker.url, BEAT_LOCK_TTL_SECONDS=30):
        standby = LockedDatabaseScheduler(app=app)
        holder = LockedDatabaseScheduler(app=app)
        holder.tick()
        holder.tick()
        assert probes_sent() == 1  # the holder sent this hour's run, once

        standby.tick()
        assert probes_sent() == 1  # the lock is held: the standby sends nothing

        client.delete(BEAT_LOCK_KEY)  # the holder was SIGKILLed; its lock expired
        standby.tick()
        standby.tick()
        assert client.get(BEAT_LOCK_KEY).decode() == standby._token
        assert probes_sent() == 1  # the new holder knows this hour's run already went out
