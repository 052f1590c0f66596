"""Celery entry points for predictions: thin, idempotent, primitive arguments."""

import datetime as dt

from celery import shared_task

from predictions import services


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def take_portfolio_snapshot(day: str | None = None) -> int:
    """Write today's (or `day`'s, ISO date) portfolio snapshot. Re-running rewrites the same rows."""
    return services.portfolio_snapshot_take(day=dt.date.fromisoformat(day) if day else None)


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def refresh_churn_causes() -> int:
    return services.churn_causes_refresh()
