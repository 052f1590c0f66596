"""B1(b): django-celery-beat's database scheduler walked over DST changes and a TIME_ZONE change
with time-machine. The real `DatabaseScheduler.tick()` decides; only the publish to the broker
is replaced by a record of what would have been sent, and the clock moves the way beat's loop
moves it (sleep for what tick() returns, at most max_interval).

Pass: a daily 09:00-local job runs exactly once per local day, at 09:00 local, and after the
TIME_ZONE change plus the documented reset (`manage.py sync_schedules --reset-last-run`) there
is no burst of "missed" runs (≤ 1 catch-up). Our own schedules are stored in UTC; they are
walked over the same DST weekends and must keep their UTC hour.
"""

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from churnshield.celery import app

pytestmark = pytest.mark.django_db(transaction=True)  # the scheduler closes old connections
UTC = dt.UTC


class RecordingScheduler(DatabaseScheduler):
    """The real scheduler; `apply_async` (the broker publish) records instead of sending."""

    producer = None  # no broker connection

    def __init__(self, *args, sent: list, **kwargs) -> None:
        self.sent = sent
        super().__init__(*args, **kwargs)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        entry = self.reserve(entry) if advance else entry
        self.sent.append((entry.name, dt.datetime.now(UTC)))
        return None


def walk(start: dt.datetime, end: dt.datetime, sent: list, max_interval: int = 1800) -> int:
    """Run beat's loop from `start` to `end` in simulated time; returns the number of ticks.

    Beat polls every few seconds; a tick that finds nothing due changes nothing, so stepping
    straight to the next due entry (or max_interval, after which the database is re-read) is the
    same walk with fewer idle ticks."""
    ticks = 0
    with time_machine.travel(start, tick=False) as clock:
        scheduler = RecordingScheduler(app=app, sent=sent, max_interval=max_interval, lazy=False)
        now = start
        while now < end:
            delay = scheduler.tick()
            ticks += 1
            now += dt.timedelta(seconds=min(max(delay or 0, 1), max_interval))
            clock.move_to(now)
        scheduler.sync()
    return ticks


def daily_job(name: str, hour: int, minute: int, zone: str, created: dt.datetime) -> None:
    """A job created at `created` (its date_changed is beat's first "last run")."""
    with time_machine.travel(created, tick=False):
        crontab = CrontabSchedule.objects.create(minute=str(minute), hour=str(hour), timezone=ZoneInfo(zone))
        PeriodicTask.objects.create(name=name, task="b1.daily", crontab=crontab)


def runs_by_local_day(sent: list, name: str, zone: str) -> dict[dt.date, list[dt.time]]:
    days: dict[dt.date, list[dt.time]] = {}
    for entry, when in sent:
        if entry == name:
            local = when.astimezone(ZoneInfo(zone))
            days.setdefault(local.date(), []).append(local.time().replace(second=0, microsecond=0))
    return days


@pytest.fixture(autouse=True)
def only_our_entries(settings):
    PeriodicTask.objects.all().delete()
    saved = app.conf.timezone
    yield
    app.conf.timezone = saved


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("America/New_York", dt.date(2026, 3, 8)),  # spring forward
        ("America/New_York", dt.date(2026, 11, 1)),  # fall back
        ("Europe/Berlin", dt.date(2026, 3, 29)),
        ("Europe/Berlin", dt.date(2026, 10, 25)),
    ],
)
def test_a_daily_local_job_runs_once_per_local_day_over_dst(zone, change):
    start = dt.datetime.combine(change - dt.timedelta(days=3), dt.time(12), ZoneInfo(zone)).astimezone(UTC)
    daily_job("nine-local", 9, 0, zone, created=start)
    end = dt.datetime.combine(change + dt.timedelta(days=3), dt.time(12), ZoneInfo(zone)).astimezone(UTC)
    sent: list = []
    walk(start, end, sent)
    days = runs_by_local_day(sent, "nine-local", zone)
    expected = [change + dt.timedelta(days=n) for n in range(-2, 4)]
    assert days == {day: [dt.time(9)] for day in expected}, days


@pytest.mark.parametrize("change", [dt.date(2026, 3, 8), dt.date(2026, 11, 1), dt.date(2026, 3, 29)])
def test_our_utc_schedules_keep_their_utc_hour_over_dst(change):
    start = dt.datetime.combine(change - dt.timedelta(days=2), dt.time(12), UTC)
    with time_machine.travel(start, tick=False):
        call_command("sync_schedules", verbosity=0)
    PeriodicTask.objects.exclude(name="churnshield:score-customers-daily").update(enabled=False)
    sent: list = []
    walk(start, start + dt.timedelta(days=4), sent)
    runs = [when for name, when in sent if name == "churnshield:score-customers-daily"]
    assert [(when.date(), when.hour, when.minute) for when in runs] == [
        (start.date() + dt.timedelta(days=n), 2, 0) for n in range(1, 5)
    ]


def test_time_zone_change_with_the_documented_reset_runs_each_day_once(settings):
    """Beat runs with CELERY_TIMEZONE=UTC for three days, stops, the deployment moves to
    America/New_York (TIME_ZONE and CELERY_TIMEZONE), `sync_schedules --reset-last-run` runs in
    the release step, and beat starts again 20 hours later (one 09:00 Berlin missed)."""
    zone = "Europe/Berlin"
    sent: list = []
    start = dt.datetime(2026, 6, 1, 12, tzinfo=UTC)
    daily_job("nine-berlin", 9, 0, zone, created=start)
    stop = start + dt.timedelta(days=3)
    walk(start, stop, sent)

    settings.TIME_ZONE = settings.CELERY_TIMEZONE = "America/New_York"
    app.conf.timezone = "America/New_York"
    restart = stop + dt.timedelta(hours=20)  # beat was down over one 09:00 Berlin (missed day)
    with time_machine.travel(restart, tick=False):
        call_command("sync_schedules", "--reset-last-run", verbosity=0)
    # The release step also installed our own schedules (every 15 s, every minute): not under test here.
    PeriodicTask.objects.filter(name__startswith="churnshield:").update(enabled=False)
    walk(restart, restart + dt.timedelta(days=3), sent)

    days = runs_by_local_day(sent, "nine-berlin", zone)
    assert all(times.count(dt.time(9)) <= 1 for times in days.values()), days
    nine = sorted(day for day, times in days.items() if dt.time(9) in times)
    assert nine == [dt.date(2026, 6, d) for d in (2, 3, 4, 6, 7, 8)]
    # The day beat was down is not made up for by a burst: at most one catch-up run.
    catch_ups = [time for times in days.values() for time in times if time != dt.time(9)]
    assert len(catch_ups) <= 1, days


# --- Per-user local times: the notification digest hour and quiet hours (alerts/notifications/timing.py)


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("America/New_York", dt.date(2026, 3, 8)),
        ("America/New_York", dt.date(2026, 11, 1)),
        ("Europe/Berlin", dt.date(2026, 3, 29)),
        ("Europe/Berlin", dt.date(2026, 10, 25)),
    ],
)
@pytest.mark.parametrize("hour", [9, 1, 2])  # 01:00–02:59 is skipped or repeated on some of these days
def test_the_digest_is_sent_once_per_local_day_over_dst(zone, change, hour):
    """The dispatcher (every minute) sends a digest when it falls due and computes the next one."""
    from alerts.notifications.timing import next_digest_at

    tz = ZoneInfo(zone)
    now = dt.datetime.combine(change - dt.timedelta(days=2), dt.time(12), tz).astimezone(UTC)
    sent = []
    for _ in range(5):
        due = next_digest_at(now, zone, hour)
        sent.append(due)
        now = due + dt.timedelta(seconds=30)  # the minute sweep that sent it
    local = [when.astimezone(tz) for when in sent]
    assert [d.date() for d in local] == [change + dt.timedelta(days=n) for n in range(-1, 4)]
    for when in local:
        wall = dt.datetime.combine(when.date(), dt.time(hour))
        exists = wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
        # On the day that skips `hour`:00, the digest goes out when the clock jumps past the gap.
        assert (when.hour, when.minute) == ((hour, 0) if exists else (hour + 1, 0)), when
    assert all(b - a >= dt.timedelta(hours=23) for a, b in itertools.pairwise(sent))


@pytest.mark.parametrize(
    ("zone", "change"), [("America/New_York", dt.date(2026, 3, 8)), ("Europe/Berlin", dt.date(2026, 10, 25))]
)
def test_quiet_hours_end_at_local_wall_time_on_dst_nights(zone, change):
    from alerts.notifications.timing import quiet_until

    tz = ZoneInfo(zone)
    night = dt.datetime.combine(change - dt.timedelta(days=1), dt.time(23, 30), tz).astimezone(UTC)
    end = quiet_until(night, zone, dt.time(22), dt.time(7))
    assert end.astimezone(tz).replace(tzinfo=None) == dt.datetime.combine(change, dt.time(7))
    assert quiet_until(end, zone, dt.time(22), dt.time(7)) is None
