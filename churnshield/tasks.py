"""Project-level maintenance tasks."""

from celery import shared_task
from django.core.management import call_command

from monitoring.reliability import GuardedTask


@shared_task(base=GuardedTask, time_limit=300, soft_time_limit=240)
def flush_expired_tokens() -> None:
    """Drop expired refresh tokens from simplejwt's outstanding/blacklist tables."""
    call_command("flushexpiredtokens")
