"""Integrations: the outside systems churn signals come from."""

from django.db import models


class Integration(models.Model):
    """A connected CRM, support desk, billing or analytics system (table `integrations`).

    `config` holds connector settings; keys that look like secrets are never rendered by the API.
    """

    class Type(models.TextChoices):
        CRM = "crm"
        SUPPORT = "support"
        PAYMENT = "payment"
        ANALYTICS = "analytics"
        OTHER = "other"

    class Status(models.TextChoices):
        CONNECTED = "connected"
        DISCONNECTED = "disconnected"
        ERROR = "error"
        SYNCING = "syncing"

    name = models.TextField()
    type = models.TextField(choices=Type.choices)
    status = models.TextField(choices=Status.choices, default=Status.DISCONNECTED)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "integrations"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["name"], name="integrations_name_unique")]

    def __str__(self) -> str:
        return self.name
