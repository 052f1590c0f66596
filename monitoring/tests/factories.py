"""Rows the health checks and metrics read: a champion model and scoring runs."""

import datetime as dt

from django.utils import timezone

from predictions.models import ModelVersion, PredictionRun


def make_champion(version: str = "rules-test-1") -> ModelVersion:
    now = timezone.now()
    return ModelVersion.objects.create(
        version=version, kind=ModelVersion.Kind.RULES, status=ModelVersion.Status.CHAMPION, trained_at=now, as_of=now
    )


def make_batch_run(model: ModelVersion, *, finished_ago: dt.timedelta, seconds: float = 42.0, scored: int = 10):
    finished = timezone.now() - finished_ago
    return PredictionRun.objects.create(
        run_key=f"batch:{finished.isoformat()}",
        trigger=PredictionRun.Trigger.BATCH,
        status=PredictionRun.Status.COMPLETED,
        model_version=model,
        started_at=finished - dt.timedelta(seconds=seconds),
        finished_at=finished,
        customers_scored=scored,
        timings={"load_s": 1.5, "predict_s": 0.5},
    )
