"""Interventions: the work a CSM (or a playbook) does to keep a customer."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Intervention(models.Model):
    """One piece of retention work on a customer (table `interventions`)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    class Priority(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Activity(models.TextChoices):
        """A touch logged by a CSM (a call made, a note taken), as opposed to retention work to do."""

        CALL = "call", "Call"
        EMAIL = "email", "E-mail"
        MEETING = "meeting", "Meeting"
        QBR = "qbr", "QBR"
        NOTE = "note", "Note"

    OPEN_STATUSES = (Status.PENDING, Status.ACTIVE, Status.IN_PROGRESS)

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="interventions")
    type = models.TextField()
    status = models.TextField(choices=Status.choices, default=Status.ACTIVE)
    priority = models.TextField(choices=Priority.choices, default=Priority.MEDIUM)
    assigned_csm = models.TextField(blank=True, default="")
    description = models.TextField(blank=True, default="")
    next_action = models.TextField(blank=True, default="")
    due_date = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True, default="")
    # Beyond the specification: whether the work kept the customer, and what it was worth,
    # so analytics and recommendations learn from real outcomes; and who created it.
    outcome = models.TextField(choices=Outcome.choices, null=True, blank=True)
    revenue_impact = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Set on a logged touch (a call, a meeting…): it is history, not work, so analytics of what
    # retention work achieved leave it out. Empty on retention work and follow-up tasks.
    activity = models.TextField(choices=Activity.choices, blank=True, default="", db_default="")

    class Meta:
        db_table = "interventions"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "active", "in_progress", "completed", "cancelled"]),
                name="interventions_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(priority__in=["low", "medium", "high"]), name="interventions_priority_valid"
            ),
            models.CheckConstraint(
                condition=Q(activity__in=["", "call", "email", "meeting", "qbr", "note"]),
                name="interventions_activity_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status"], name="interventions_status_idx"),
            models.Index(fields=["customer", "-created_at"], name="interventions_cust_created_idx"),
            models.Index(fields=["type", "status"], name="interventions_type_status_idx"),
            # "Due today and overdue" on the admin home: open work by due time.
            models.Index(
                fields=["due_date"],
                name="interventions_open_due_idx",
                condition=Q(status__in=["pending", "active", "in_progress"]),
            ),
            # "What worked" for recommendations counts decided work by type and outcome: an
            # index-only scan instead of reading the table on every customer page.
            models.Index(
                fields=["type", "outcome"],
                include=["customer", "id"],
                name="interventions_decided_idx",
                condition=Q(status="completed", outcome__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} for customer {self.customer_id}"
