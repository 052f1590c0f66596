"""Publishing follow-up work to the broker without letting a broker outage fail the caller.

Every place that hands work to Celery after its own write has committed goes through `enqueue`
(or `enqueue_on_commit`). The write is the record of the work: a lost message is picked up again
by the sweeper that reads those rows (webhook events, alerts owed a fan-out, playbook executions'
queued leases, sync runs' leases), or the work is redone by the next scheduled pass (trigger
rules, re-scores). So a broker that cannot be reached must cost the caller a bounded wait and a
log line, never a 500 after a committed write.

Bounds on a publish:
- one retry, at once: a pooled connection that a broker restart dropped fails once and the retry
  takes a fresh one; Celery's default (3 retries with pauses) held each request ~0.6 s on a
  refused connection and 4 × the connect timeout on an unreachable host;
- `ignore_result`: nothing reads these tasks' results, and with a Redis result backend every
  `delay()` otherwise first subscribes to the result's channel, retrying 20 times over ~19 s
  before it raises a RuntimeError, which is what made a request hang when Redis was down;
- the broker's connect and socket timeouts (settings, ADR 0012).

A task may be named by its registered name ("app.tasks.function") instead of passed: services
enqueue their app's tasks that way, since the tasks import the services and an import the other
way round would make the two files a cycle.
"""

import logging
from importlib import import_module
from typing import Any

from celery import Task, current_app
from django.db import transaction
from kombu.exceptions import KombuError

logger = logging.getLogger("core.enqueue")

PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def task_named(name: str) -> Task:
    """The task registered as `name`. A process that has not imported the task's module yet (a
    web process only imports the tasks it uses) imports it here, as a worker's autodiscovery does;
    an unknown name raises KeyError."""
    if name not in current_app.tasks:
        import_module(name.rpartition(".")[0])
    return current_app.tasks[name]


def enqueue(task: Task | str, *args: Any, countdown: float | None = None, queue: str | None = None) -> bool:
    """Publish `task(*args)`; returns False (and logs) when the broker cannot take it.

    In the embedded topology (eager tasks) the task runs here and its own errors propagate as
    before: only the broker's errors are absorbed.
    """
    if isinstance(task, str):
        task = task_named(task)
    options: dict[str, Any] = {"ignore_result": True, "retry_policy": PUBLISH_RETRY_POLICY}
    if countdown is not None:
        options["countdown"] = countdown
    if queue:
        options["queue"] = queue
    try:
        task.apply_async(args, **options)
    except (KombuError, OSError) as error:
        logger.warning(
            "could not publish %s (%s: %s); a sweeper or the next scheduled pass picks the work up",
            task.name,
            type(error).__name__,
            error,
            extra={"task": task.name},
        )
        return False
    return True


def enqueue_on_commit(task: Task | str, *args: Any, countdown: float | None = None, queue: str | None = None) -> None:
    """`enqueue` once the current transaction commits (at once in autocommit)."""
    transaction.on_commit(lambda: enqueue(task, *args, countdown=countdown, queue=queue))
