"""Bookkeeping for reliable tasks: how many times each task message has started."""

from django.db import models


class TaskAttempt(models.Model):
    """One Celery task message (by task id) and how many times a worker started it.

    Written and committed at task start, before any work, so a task whose worker is SIGKILLed
    mid-run still counts the attempt: the poison-loop guard of `GuardedTask`.
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DEAD = "dead"

    task_id = models.TextField()
    task_name = models.TextField()
    attempts = models.IntegerField(default=0)
    status = models.TextField(choices=Status.choices, default=Status.RUNNING)
    first_started_at = models.DateTimeField()
    last_started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "monitoring_task_attempts"
        constraints = [models.UniqueConstraint(fields=["task_id"], name="monitoring_task_attempts_task_id_unique")]
        indexes = [models.Index(fields=["status", "last_started_at"], name="monitoring_task_status_idx")]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] x{self.attempts} {self.status}"
