"""Playbooks (ordered steps) and their executions on customers."""

from django.db import models
from django.db.models import Q


class Playbook(models.Model):
    """A named, ordered list of steps that answers a churn cause (table `playbooks`)."""

    name = models.TextField()
    description = models.TextField(blank=True, default="")
    steps = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Beyond the specification: a playbook can be switched off without losing its history.
    is_active = models.BooleanField(default=True)

    class Meta:
        db_table = "playbooks"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["name"], name="playbooks_name_unique")]

    def __str__(self) -> str:
        return self.name


class PlaybookExecution(models.Model):
    """One run of a playbook on one customer (table `playbook_executions`)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # Executions are history: a playbook that has run cannot be deleted, only deactivated.
    playbook = models.ForeignKey(Playbook, on_delete=models.PROTECT, related_name="executions")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="playbook_executions")
    status = models.TextField(choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "playbook_executions"
        ordering = ["-started_at", "-id"]
        constraints = [
            # One running execution per customer and playbook.
            models.UniqueConstraint(
                fields=["playbook", "customer"],
                condition=Q(status="running"),
                name="playbook_exec_one_running",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "completed", "failed", "cancelled"]),
                name="playbook_exec_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-started_at"], name="playbook_exec_cust_start_idx"),
            models.Index(fields=["status"], name="playbook_exec_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.playbook_id} on customer {self.customer_id} ({self.status})"
