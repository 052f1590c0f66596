"""Writes for monitoring and maintenance: task attempts, retention, ANALYZE (backups and restores:
`monitoring.backups`)."""

import datetime as dt
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from core.db import delete_in_batches
from monitoring.models import TaskAttempt

logger = logging.getLogger("churnshield.maintenance")


# --- Task attempts (GuardedTask's poison-loop guard) ----------------------------------------------


def task_attempt_start(*, task_id: str, task_name: str) -> int:
    """Count one more start of this task message, committed at once; returns the attempt number."""
    now = timezone.now()
    with transaction.atomic():
        row, created = TaskAttempt.objects.select_for_update().get_or_create(
            task_id=task_id,
            defaults={"task_name": task_name, "attempts": 1, "first_started_at": now, "last_started_at": now},
        )
        if not created:
            row.attempts += 1
            row.last_started_at, row.status = now, TaskAttempt.Status.RUNNING
            row.save(update_fields=["attempts", "last_started_at", "status"])
    return row.attempts


def task_attempt_finish(*, task_id: str, status: str, error: str = "") -> None:
    TaskAttempt.objects.filter(task_id=task_id).update(status=status, error=error, finished_at=timezone.now())


# --- Retention ------------------------------------------------------------------------------------
# A retention job is `fn(cutoff: datetime) -> int` (rows removed or compacted). Jobs are listed in
# settings.RETENTION_JOBS as {name: dotted path}; their ages in settings.RETENTION_DAYS[name].


def purge_finished_task_attempts(cutoff: dt.datetime) -> int:
    return delete_in_batches(
        TaskAttempt.objects.filter(finished_at__lt=cutoff).exclude(status=TaskAttempt.Status.DEAD).order_by()
    )


def retention_run(*, now: dt.datetime | None = None, only: list[str] | None = None) -> dict[str, int]:
    """Run every configured retention job once; returns rows affected per job."""
    now = now or timezone.now()
    results: dict[str, int] = {}
    for name, path in settings.RETENTION_JOBS.items():
        if only and name not in only:
            continue
        days = settings.RETENTION_DAYS.get(name)
        if days is None:
            logger.warning("retention job %s has no age in RETENTION_DAYS; skipped", name)
            continue
        job: Callable[[dt.datetime], int] = import_string(path)
        results[name] = job(now - dt.timedelta(days=days))
        logger.info("retention %s: %s rows older than %s days", name, results[name], days, extra={"job": name})
    return results


# --- ANALYZE --------------------------------------------------------------------------------------


def analyze_tables(tables: list[str]) -> None:
    """Refresh planner statistics now rather than whenever autovacuum gets to it."""
    with connection.cursor() as cursor:
        if connection.vendor in ("postgresql", "sqlite"):
            for table in tables:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")


def analyze_after_batch(*, rows: int, tables: list[str]) -> bool:
    """ANALYZE after a write large enough to move the statistics (settings.ANALYZE_AFTER_ROWS)."""
    if rows < settings.ANALYZE_AFTER_ROWS:
        return False
    analyze_tables(tables)
    logger.info("analyzed %s after a batch of %s rows", ",".join(tables), rows)
    return True
