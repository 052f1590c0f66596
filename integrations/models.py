"""Integrations: the outside systems churn signals come from, their sync runs and webhook events."""

from django.db import models
from django.db.models import Q


class Integration(models.Model):
    """A connected CRM, support desk, billing or analytics system (table `integrations`).

    `config` holds connector settings; keys that look like secrets are never rendered by the API.
    `config["provider"]` names the connector (stripe, hubspot, zendesk, segment, generic).
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
    # Beyond the specification: the pull cursor and the health the admin and API show.
    cursor = models.JSONField(default=dict, blank=True, help_text="Where the next pull sync resumes.")
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.IntegerField(default=0)
    # When the newest verified (signature-checked) delivery taken in was received: what shows an
    # integration that only receives pushes (no API to test or pull) is connected.
    last_event_at = models.DateTimeField("last event received", null=True, blank=True)

    class Meta:
        db_table = "integrations"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["name"], name="integrations_name_unique")]

    def __str__(self) -> str:
        return self.name

    @property
    def provider(self) -> str:
        return str((self.config or {}).get("provider", "")).lower()


class SyncRun(models.Model):
    """One pull sync of one integration (table `sync_runs`)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="sync_runs")
    trigger = models.TextField(choices=Trigger.choices, default=Trigger.SCHEDULE)
    status = models.TextField(choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    fetched = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "sync_runs"
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["integration", "-started_at"], name="sync_runs_integ_start_idx")]

    def __str__(self) -> str:
        return f"Sync {self.pk} of {self.integration_id} ({self.status})"


class WebhookEvent(models.Model):
    """A delivery received from a provider, stored raw before processing (table `webhook_events`).

    The row is the outbox too: `received`/`retrying` rows whose `next_attempt_at` has passed are
    swept by beat, so an enqueue lost between commit and broker loses nothing.
    """

    class Status(models.TextChoices):
        RECEIVED = "received"
        RETRYING = "retrying"
        PROCESSED = "processed"
        DEAD = "dead"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="webhook_events")
    provider = models.TextField()
    event_id = models.TextField(help_text="The provider's event id: the dedupe key.")
    event_type = models.TextField(blank=True, default="")
    body = models.TextField(help_text="The raw body, exactly as received.")
    status = models.TextField(choices=Status.choices, default=Status.RECEIVED)
    attempts = models.IntegerField(default=0)
    received_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "webhook_events"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "event_id"], name="webhook_events_integ_event_unique")
        ]
        indexes = [
            # The sweeper's and the drain's read: pending rows that are due.
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_events_pending_idx",
                condition=Q(status__in=["received", "retrying"]),
            ),
            models.Index(fields=["integration", "status"], name="webhook_events_integ_stat_idx"),
            models.Index(fields=["received_at"], name="webhook_events_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id} ({self.status})"


class ExternalRecord(models.Model):
    """Which local row an outside object became, and the version of it last applied.

    Unique per (integration, kind, external id): the same Stripe customer id in two Stripe accounts
    are two records. `version` is the provider's modification time; an event older than it is
    ignored, so events may arrive in any order. `data` keeps the applied state the customer's
    derived fields are recomputed from (a subscription's MRR, plan and status).
    """

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="external_records")
    kind = models.TextField()
    external_id = models.TextField()
    local_id = models.IntegerField(null=True, blank=True)
    customer_id = models.IntegerField(null=True, blank=True)
    version = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "integration_external_records"
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "kind", "external_id"], name="external_records_integ_kind_ext_unique"
            )
        ]
        indexes = [models.Index(fields=["customer_id", "kind"], name="external_records_cust_kind_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.external_id} → {self.local_id}"
