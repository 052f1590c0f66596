"""Celery entry points for predictions: thin, idempotent, primitive arguments."""

import datetime as dt

from celery import shared_task

from monitoring.reliability import GuardedTask
from monitoring.services import analyze_after_batch
from predictions import services
from predictions.services import drift, registry, scoring


@shared_task(base=GuardedTask, time_limit=600, soft_time_limit=540)
def take_portfolio_snapshot(day: str | None = None) -> int:
    """Write today's (or `day`'s, ISO date) portfolio snapshot. Re-running rewrites the same rows."""
    return services.portfolio_snapshot_take(day=dt.date.fromisoformat(day) if day else None)


@shared_task(base=GuardedTask, time_limit=600, soft_time_limit=540)
def refresh_churn_causes() -> int:
    return services.churn_causes_refresh()


@shared_task(base=GuardedTask, time_limit=3600, soft_time_limit=3300)
def score_all_customers() -> int:
    """The daily batch. Idempotent: the run of a day is keyed `batch:<date>` and runs once."""
    run = scoring.score_customers()
    # A large batch moves the planner's statistics: refresh them now, so that the day's reads are
    # not planned on yesterday's book while autovacuum has yet to reach these tables.
    analyze_after_batch(rows=run.customers_scored, tables=["churn_predictions", "customers", "alerts"])
    return run.pk


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def rescore_customer(customer_id: int) -> int:
    """Real-time re-score after a significant event (enqueued after commit)."""
    return scoring.score_one(customer_id=customer_id).pk


@shared_task(acks_late=True, time_limit=3600, soft_time_limit=3300)
def retrain_model(drift_run_id: int | None = None) -> str | None:
    """Retraining, weekly or after a batch with major drift (`drift_run_id`, which records the
    outcome): the new version is promoted only if it beats the champion."""
    if drift_run_id is not None:
        version = drift.model_retrain_after_drift(run_id=drift_run_id)
        return version.version if version is not None else None
    return registry.model_train().version


@shared_task(acks_late=True, time_limit=3600, soft_time_limit=3300)
def rescore_book_after_model_change(change_id: int) -> int | None:
    """Score the whole book with the champion a manager just chose. Idempotent: the run is keyed
    by the change, so a redelivered message returns the completed run."""
    return scoring.score_after_model_change(change_id=change_id)
