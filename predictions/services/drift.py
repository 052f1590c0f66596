"""Major drift schedules a retrain: after a batch whose features drifted from the champion's
training data (mean PSI at `settings.DRIFT_MAJOR_PSI` or more), the training task is enqueued
once the batch commits, at most once a day. The retrain is `registry.model_train`: its model
replaces the champion only if it wins by the usual promotion rule."""

import datetime as dt

from django.conf import settings
from django.utils import timezone

from core.enqueue import enqueue_on_commit
from predictions.models import ModelVersion, PredictionRun
from predictions.selectors import batch_drift
from predictions.services.registry import model_train

RETRAIN_EVERY = dt.timedelta(days=1)


def retrain_if_drifted(*, run: PredictionRun) -> bool:
    """Inside the batch's transaction: when `run` (a batch) drifted majorly and no retrain was
    scheduled in the last day, mark the run and enqueue the training task after commit."""
    if not settings.DRIFT_RETRAIN or run.trigger != PredictionRun.Trigger.BATCH:
        return False
    if batch_drift(run.drift)["drift_status"] != "major":
        return False
    now = timezone.now()  # wall clock: a batch run as of a past date still counts today
    if PredictionRun.objects.filter(retrain_scheduled_at__gt=now - RETRAIN_EVERY).exists():
        return False
    run.retrain_scheduled_at = now
    run.save(update_fields=["retrain_scheduled_at"])
    enqueue_on_commit("predictions.tasks.retrain_model", run.pk)
    return True


def model_retrain_after_drift(*, run_id: int) -> ModelVersion | None:
    """The retrain `run_id`'s drift scheduled; None when the run is gone or already retrained."""
    run = PredictionRun.objects.filter(pk=run_id, retrain_finished_at__isnull=True).first()
    if run is None:
        return None
    version = model_train()
    run.retrain_version, run.retrain_finished_at = version, timezone.now()
    run.save(update_fields=["retrain_version", "retrain_finished_at"])
    return version
