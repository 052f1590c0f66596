"""Maintenance tasks run by beat (schedules in churnshield/schedules.py). Thin: services do the work."""

from celery import shared_task

from monitoring import backups, services
from monitoring.reliability import GuardedTask


@shared_task(base=GuardedTask, time_limit=1800, soft_time_limit=1700)
def backup_database() -> str:
    """Daily backup with rotation. Idempotent enough: a re-run writes one more file, rotation trims."""
    return str(backups.backup_create())


@shared_task(base=GuardedTask, time_limit=1800, soft_time_limit=1700)
def run_retention() -> dict[str, int]:
    """Every retention job once; each is a conditional delete/compaction, so a re-run is a no-op."""
    return services.retention_run()


@shared_task(base=GuardedTask, time_limit=600, soft_time_limit=540)
def analyze_tables(tables: list[str]) -> None:
    services.analyze_tables(tables)
