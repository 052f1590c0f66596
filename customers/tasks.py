"""Celery entry points for customers: thin, idempotent, primitive arguments."""

from celery import shared_task

from customers.history.jobs import import_job_run
from monitoring.reliability import GuardedTask


# An import is idempotent, so a worker killed mid-file is safe to run again; an hour covers a
# book of several million rows on a small host (and stays under the broker's visibility timeout).
@shared_task(base=GuardedTask, time_limit=3600, soft_time_limit=3300)
def run_import_job(job_id: int) -> None:
    """Import the files of an uploaded history import job (see customers.history.jobs)."""
    import_job_run(job_id=job_id)
