"""Alerts: rows first, then fanned out to the people who should see them."""

from django.db import models


class Alert(models.Model):
    """Something a CSM should look at (table `alerts`; `message`/`read` as the specification names them)."""

    class Severity(models.TextChoices):
        CRITICAL = "critical"
        HIGH = "high"
        MEDIUM = "medium"
        LOW = "low"

    message = models.TextField()
    read = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Beyond the specification: what the contract's alert shape needs and what scopes it to a
    # portfolio (alerts without a customer, e.g. a sync failure, are for managers and admins).
    title = models.TextField()
    severity = models.TextField(choices=Severity.choices, default=Severity.MEDIUM)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )

    class Meta:
        db_table = "alerts"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(severity__in=["critical", "high", "medium", "low"]), name="alerts_severity_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="alerts_created_idx"),
            models.Index(fields=["customer", "-created_at"], name="alerts_customer_created_idx"),
            models.Index(fields=["read"], name="alerts_read_idx"),
        ]

    def __str__(self) -> str:
        return self.title
