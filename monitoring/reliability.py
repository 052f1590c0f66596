"""A Celery base class for idempotent tasks that must survive a worker being killed.

Celery acks a late-acked message even when the worker child dies (SIGKILL, OOM), so the task is
lost; `reject_on_worker_lost` re-queues it instead, which turns a task that *causes* the crash
into an endless loop. `GuardedTask` pairs the two: every start is counted in the database and
committed before the task body runs; a message started more than `TASK_MAX_ATTEMPTS` times is
dead-lettered (status `dead`, logged) and acked without running again.

Use it only for tasks whose effect is idempotent (keyed upserts, run keys):
`@shared_task(base=GuardedTask)`.
"""

import logging
from typing import Any

from celery import Task
from celery.exceptions import Retry
from django.conf import settings

from monitoring import services
from monitoring.models import TaskAttempt

logger = logging.getLogger("churnshield.tasks")


class GuardedTask(Task):
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.is_eager or not request.id:
            return super().__call__(*args, **kwargs)
        attempts = services.task_attempt_start(task_id=request.id, task_name=self.name)
        limit = getattr(settings, "TASK_MAX_ATTEMPTS", 3)
        # Celery's own retries reuse the task id; only unexplained restarts count against the guard.
        if attempts - (request.retries or 0) > limit:
            services.task_attempt_finish(
                task_id=request.id, status=TaskAttempt.Status.DEAD, error=f"started {attempts} times; dead-lettered"
            )
            logger.error(
                "task %s[%s] dead-lettered after %s starts", self.name, request.id, attempts, extra={"task": self.name}
            )
            return None
        try:
            result = super().__call__(*args, **kwargs)
        except Retry:
            raise
        except BaseException as exc:
            services.task_attempt_finish(task_id=request.id, status=TaskAttempt.Status.FAILED, error=repr(exc)[:2000])
            raise
        services.task_attempt_finish(task_id=request.id, status=TaskAttempt.Status.SUCCEEDED)
        return result
