"""Carry the request id from the web request into the Celery tasks it enqueues.

The publisher puts it in the message headers (`before_task_publish`); the worker reads it back
from the task request (Celery copies custom headers onto `task.request`) and sets the contextvar
for the task's lifetime, so the task's log lines carry the id of the request that caused them.
Connected once in MonitoringConfig.ready().
"""

import logging
import time
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from monitoring.context import new_request_id, request_id_var, task_id_var

HEADER = "churnshield_request_id"
_tokens: dict[str, tuple] = {}
logger = logging.getLogger("churnshield.tasks")


@before_task_publish.connect(weak=False)
def _stamp_request_id(headers: dict | None = None, **_: Any) -> None:
    if headers is not None and not headers.get(HEADER):
        request_id = request_id_var.get()
        if request_id:
            headers[HEADER] = request_id


@task_prerun.connect(weak=False)
def _enter_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    request_id = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    # Eager tasks run inside the caller's context and already have its id.
    request_id = request_id or request_id_var.get() or new_request_id()
    if task_id:
        _tokens[task_id] = (request_id_var.set(request_id), task_id_var.set(task_id), time.perf_counter())


@task_postrun.connect(weak=False)
def _leave_task(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    tokens = _tokens.pop(task_id, None) if task_id else None
    if tokens:
        # One structured line per task run, still inside the task's context (request id, task id).
        logger.info(
            "task %s finished: %s",
            getattr(task, "name", "?"),
            state,
            extra={
                "task": getattr(task, "name", None),
                "state": state,
                "duration_ms": round((time.perf_counter() - tokens[2]) * 1000, 2),
            },
        )
        request_id_var.reset(tokens[0])
        task_id_var.reset(tokens[1])
