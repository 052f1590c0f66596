"""Thin Celery entry points: take ids, call one service."""

from celery import shared_task

from core.exceptions import ConflictError, NotFoundError
from integrations import services


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280, ignore_result=True)
def drain_webhooks(integration_id: int) -> int:
    """Process the integration's due webhook events (idempotent: claimed rows are leased and fenced)."""
    return services.webhooks_drain(integration_id=integration_id)


@shared_task(acks_late=True, time_limit=120, soft_time_limit=110, ignore_result=True)
def sweep_webhooks() -> list[int]:
    """Beat: the outbox sweeper for enqueues lost between commit and broker, and for retries."""
    return services.webhooks_sweep()


@shared_task(acks_late=True, time_limit=600, soft_time_limit=580, ignore_result=True)
def purge_webhook_events() -> int:
    return services.webhook_events_purge()


@shared_task(acks_late=True, time_limit=3600, soft_time_limit=3500, ignore_result=True)
def sync_integration(integration_id: int, trigger: str = "schedule") -> int | None:
    """Beat (per-integration schedule): open a run and execute it; skip when one is already running."""
    try:
        run = services.sync_start(integration_id=integration_id, trigger=trigger)
    except (ConflictError, NotFoundError):
        return None
    return services.sync_execute(run_id=run.pk).pk


@shared_task(acks_late=True, time_limit=3600, soft_time_limit=3500, ignore_result=True)
def run_sync(run_id: int) -> int:
    """Execute a run opened by "sync now"."""
    return services.sync_execute(run_id=run_id).pk
