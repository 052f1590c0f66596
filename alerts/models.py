"""Alerts: rows first, then fanned out to the people who should see them.

Delivery (email, Slack, Teams, the daily digest) is recorded in `notification_deliveries`; how
alerts are grouped, throttled and delayed is configured in the `NotificationSettings` singleton
and each user's `NotificationPreference`.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q, Value

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class Alert(models.Model):
    """Something a CSM should look at (table `alerts`; `message`/`read` as the specification names them)."""

    class Severity(models.TextChoices):
        CRITICAL = "critical"
        HIGH = "high"
        MEDIUM = "medium"
        LOW = "low"

    class Source(models.TextChoices):
        """What raised the alert. Other apps pass one of these values to `alert_create(source=...)`."""

        RISK_RISE = "risk_rise", "Risk level rose"
        HEALTH_DROP = "health_drop", "Health dropped sharply"
        PAYMENT_FAILED = "payment_failed", "Payment failed"
        SYNC_FAILED = "sync_failed", "Integration sync failed"
        PLAYBOOK_STEP_FAILED = "playbook_step_failed", "Playbook step failed"
        WEBHOOK_DEAD_LETTER = "webhook_dead_letter", "Webhook dead-lettered"
        MODEL_CHANGED = "model_changed", "Scoring model changed"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        SNOOZED = "snoozed"
        RESOLVED = "resolved"

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
    # Notification issue: who it is for (the customer's CSM when raised), why, and its life cycle.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="owned_alerts"
    )
    # Database defaults too, so bulk loaders that COPY only the original columns keep working.
    source = models.TextField(choices=Source.choices, default=Source.OTHER, db_default=Source.OTHER)
    # Alerts with one key within the group window become one notification ("customer:<id>" by default).
    grouping_key = models.TextField(blank=True, default="", db_default="")
    # Facts the auto-resolve rules compare against (e.g. the health score before a drop).
    context = models.JSONField(default=dict, blank=True, db_default=Value({}, output_field=models.JSONField()))
    status = models.TextField(choices=Status.choices, default=Status.OPEN, db_default=Status.OPEN)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    snoozed_until = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The notifications outbox: True from the commit that raised an open alert until the commit of
    # the fan-out that wrote its deliveries, so a fan-out whose enqueue never reached the broker is
    # swept (`dispatch_notifications`) and none runs twice. Rows written around `alert_create`
    # (bulk loaders, the demo) are history: the database default leaves them un-notified.
    fan_out_pending = models.BooleanField(default=True, db_default=False)

    class Meta:
        db_table = "alerts"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(severity__in=["critical", "high", "medium", "low"]), name="alerts_severity_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["open", "acknowledged", "snoozed", "resolved"]), name="alerts_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="snoozed") | Q(snoozed_until__isnull=False), name="alerts_snoozed_has_until"
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="alerts_created_idx"),
            models.Index(fields=["customer", "-created_at"], name="alerts_customer_created_idx"),
            models.Index(fields=["read"], name="alerts_read_idx"),
            models.Index(fields=["grouping_key", "status"], name="alerts_group_status_idx"),
            models.Index(
                fields=["source", "customer"], condition=Q(resolved_at__isnull=True), name="alerts_unresolved_idx"
            ),
            models.Index(
                fields=["created_at"], condition=Q(fan_out_pending=True, status="open"), name="alerts_fan_out_owed_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.title


class NotificationSettings(models.Model):
    """The one row of noise-control settings (editable in the admin; `notification_settings_get()` reads it)."""

    group_wait_seconds = models.PositiveIntegerField(
        default=30, help_text="Wait this long after a group's first alert to collect more before notifying."
    )
    group_interval_minutes = models.PositiveIntegerField(
        default=10, help_text="After a group was notified, new alerts in it wait this long and go out as one."
    )
    throttle_limit = models.PositiveIntegerField(
        default=10, help_text="At most this many notifications per user and channel within the throttle window."
    )
    throttle_window_minutes = models.PositiveIntegerField(default=60)
    digest_hour = models.PositiveSmallIntegerField(
        default=8, help_text="Local hour (in each user's time zone) at which the daily digest is sent."
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=5, help_text="Attempts per delivery on transient errors (exponential backoff with jitter)."
    )
    retry_backoff_seconds = models.PositiveIntegerField(default=10, help_text="Backoff factor of the first retry.")
    retry_backoff_max_seconds = models.PositiveIntegerField(default=600)
    health_drop_points = models.PositiveSmallIntegerField(
        default=20, help_text="A re-score that lowers health by at least this many points raises an alert."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "notification_settings"
        verbose_name = "notification settings"
        verbose_name_plural = "notification settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="notification_settings_singleton"),
            models.CheckConstraint(condition=Q(digest_hour__lte=23), name="notification_settings_digest_hour"),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="notification_settings_attempts_gte_1"),
        ]

    def __str__(self) -> str:
        return "Notification settings"


class NotificationPreference(models.Model):
    """How one user wants to be notified (no row = the defaults below)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email_enabled = models.BooleanField(default=True)
    slack_webhook_url = models.TextField(blank=True, default="")
    teams_webhook_url = models.TextField(blank=True, default="")
    in_app_enabled = models.BooleanField(default=True)
    min_severity = models.TextField(choices=Alert.Severity.choices, default=Alert.Severity.MEDIUM)
    time_zone = models.TextField(default="UTC")
    # Local times; a window may wrap midnight (22:00–07:00). Critical alerts are not held back.
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    digest_enabled = models.BooleanField(
        default=False, help_text="Send non-critical alerts as one daily digest email instead of instantly."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "notification_preferences"
        constraints = [
            models.CheckConstraint(
                condition=Q(min_severity__in=["critical", "high", "medium", "low"]),
                name="notification_preferences_min_severity_valid",
            ),
            models.CheckConstraint(
                condition=Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                | Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False),
                name="notification_preferences_quiet_hours_pair",
            ),
        ]

    def __str__(self) -> str:
        return f"Notification preferences of {self.user}"


class NotificationDelivery(models.Model):
    """One notification to one person on one channel: the alerts it carries and how sending went."""

    class Channel(models.TextChoices):
        EMAIL = "email"
        SLACK = "slack"
        TEAMS = "teams"
        DIGEST = "digest", "Daily digest email"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (collecting alerts until due)"
        SENDING = "sending"
        RETRYING = "retrying"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped", "Skipped (every alert acknowledged, snoozed or resolved)"

    # The alert that opened the notification; `alerts` holds every alert it carries.
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    alerts = models.ManyToManyField(Alert, related_name="notifications", db_table="notification_delivery_alerts")
    channel = models.TextField(choices=Channel.choices)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_deliveries"
    )
    grouping_key = models.TextField(blank=True, default="")
    status = models.TextField(choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    due_at = models.DateTimeField(help_text="When it goes out (end of the group wait, quiet hours or throttle).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "notification_deliveries"
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(channel__in=["email", "slack", "teams", "digest"]),
                name="notification_deliveries_channel_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sending", "retrying", "sent", "failed", "skipped"]),
                name="notification_deliveries_status_valid",
            ),
            # One open (still collecting) notification per person, channel and group: new alerts join it.
            models.UniqueConstraint(
                fields=["recipient", "channel", "grouping_key"],
                condition=Q(status="pending"),
                name="notification_deliveries_one_pending_per_group",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="notif_deliveries_due_idx"),
            models.Index(fields=["recipient", "channel", "-sent_at"], name="notif_deliveries_sent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient} ({self.status})"
