"""Retention jobs (configurable ages), ANALYZE after large batches, and the beat schedules."""

import datetime as dt

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from alerts.models import Alert
from churnshield.schedules import SCHEDULES
from customers.models import UserSession
from monitoring import services
from monitoring.models import TaskAttempt
from predictions.models import ModelVersion

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def aged(model, pk: int, **fields) -> None:
    model.objects.filter(pk=pk).update(**fields)  # created_at is auto_now_add: set it afterwards


def test_retention_removes_only_what_is_old_enough(make_customer):
    customer = make_customer()
    old_read = Alert.objects.create(title="a", message="m", customer=customer, read=True)
    old_unread = Alert.objects.create(title="b", message="m", customer=customer, read=False)
    new_read = Alert.objects.create(title="c", message="m", customer=customer, read=True)
    aged(Alert, old_read.pk, created_at=NOW - dt.timedelta(days=91))
    aged(Alert, old_unread.pk, created_at=NOW - dt.timedelta(days=400))
    aged(Alert, new_read.pk, created_at=NOW - dt.timedelta(days=89))

    raw = [{"type": "open_report", "report_id": 7, "ip": "203.0.113.9"}, "view_dashboard", {"name": "export"}]
    old_session = UserSession.objects.create(customer=customer, started_at=NOW - dt.timedelta(days=401), actions=raw)
    new_session = UserSession.objects.create(customer=customer, started_at=NOW - dt.timedelta(days=10), actions=raw)

    def model(version: str, status: str, age_days: int) -> ModelVersion:
        at = NOW - dt.timedelta(days=age_days)
        return ModelVersion.objects.create(
            version=version, kind="xgboost", status=status, trained_at=at, as_of=at, artifact=b"booster-bytes"
        )

    old_retired = model("old-retired", "retired", 40)
    new_retired = model("new-retired", "retired", 10)
    old_champion = model("old-champion", "champion", 400)
    TaskAttempt.objects.create(
        task_id="t-old", task_name="x", attempts=1, status="succeeded",
        first_started_at=NOW - dt.timedelta(days=20), last_started_at=NOW - dt.timedelta(days=20),
        finished_at=NOW - dt.timedelta(days=20),
    )  # fmt: skip

    results = services.retention_run(now=NOW)

    assert results == {
        "read_alerts": 1,
        "session_actions": 1,
        "retired_model_artifacts": 1,
        "task_attempts": 1,
        "prediction_history_weekly": 0,  # thinned in predictions/tests/test_prediction_history.py
        "prediction_history_monthly": 0,
    }
    assert set(Alert.objects.values_list("pk", flat=True)) == {old_unread.pk, new_read.pk}
    old_session.refresh_from_db()
    new_session.refresh_from_db()
    assert old_session.actions == ["open_report", "view_dashboard", "export"]  # same length: same features
    assert new_session.actions == raw
    artifacts = dict(ModelVersion.objects.values_list("version", "artifact"))
    assert artifacts["old-retired"] is None
    assert bytes(artifacts["new-retired"]) == b"booster-bytes" and bytes(artifacts["old-champion"]) == b"booster-bytes"
    assert not TaskAttempt.objects.filter(task_id="t-old").exists()
    # A second run finds nothing left to do.
    assert set(services.retention_run(now=NOW).values()) == {0}
    del old_retired, new_retired, old_champion


def test_retention_ages_come_from_settings(make_customer):
    customer = make_customer()
    alert = Alert.objects.create(title="a", message="m", customer=customer, read=True)
    aged(Alert, alert.pk, created_at=NOW - dt.timedelta(days=10))
    assert services.retention_run(now=NOW, only=["read_alerts"]) == {"read_alerts": 0}
    with override_settings(RETENTION_DAYS={"read_alerts": 7}):
        assert services.retention_run(now=NOW, only=["read_alerts"]) == {"read_alerts": 1}


def test_a_retention_hook_for_another_app_is_one_settings_line(make_customer):
    """The integrations register their raw webhook events the same way; here a stand-in job proves the wiring."""
    calls = []
    import monitoring.services as module

    module._test_hook = lambda cutoff: calls.append(cutoff) or 5
    try:
        with override_settings(
            RETENTION_JOBS={"webhook_events": "monitoring.services._test_hook"}, RETENTION_DAYS={"webhook_events": 30}
        ):
            assert services.retention_run(now=NOW) == {"webhook_events": 5}
    finally:
        del module._test_hook
    assert calls == [NOW - dt.timedelta(days=30)]


@pytest.mark.django_db(transaction=True)
def test_analyze_runs_only_after_a_large_batch():
    def last_analyze():
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'churn_predictions'")
            return cursor.fetchone()[0]

    before = last_analyze()
    with override_settings(ANALYZE_AFTER_ROWS=1000):
        assert services.analyze_after_batch(rows=999, tables=["churn_predictions"]) is False
        assert last_analyze() == before
        assert services.analyze_after_batch(rows=1000, tables=["churn_predictions"]) is True
    if connection.vendor == "postgresql":
        assert last_analyze() is not None and last_analyze() != before


def test_beat_schedules_cover_backups_and_retention_in_utc():
    tasks = {entry["task"] for entry in SCHEDULES.values()}
    assert {"monitoring.tasks.backup_database", "monitoring.tasks.run_retention"} <= tasks


def test_sync_schedules_installs_them_in_utc():
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    call_command("sync_schedules", stdout=open("/dev/null", "w"))  # noqa: SIM115
    task = PeriodicTask.objects.get(name="churnshield:backup-database-daily")
    assert task.crontab.timezone.key == "UTC" and task.enabled
