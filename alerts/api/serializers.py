import datetime as dt

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alerts.models import Alert
from alerts.notifications.errors import UnsafeWebhookURL
from alerts.notifications.webhooks import webhook_target
from core.api import fields as strict
from core.api.schema_hooks import body_rules


@extend_schema_field({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$", "example": "22:00"})
class LocalTimeField(serializers.TimeField):
    """A wall-clock time in the user's own time zone ("22:00"): no offset, unlike OpenAPI's
    `format: time`, which is an RFC 3339 time with one."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(format="%H:%M", **kwargs)


class AlertOutputSerializer(serializers.ModelSerializer):
    """The contract's alert: the table's `message`/`read` are `description`/`isRead`."""

    description = serializers.CharField(source="message")
    isRead = serializers.BooleanField(source="read")
    createdAt = serializers.DateTimeField(source="created_at")
    customerId = serializers.IntegerField(source="customer_id", allow_null=True)

    class Meta:
        model = Alert
        fields = ["id", "title", "description", "severity", "isRead", "createdAt", "customerId"]
        read_only_fields = fields


class AlertStatusOutputSerializer(serializers.ModelSerializer):
    """An alert's life cycle after acknowledge/snooze (the list keeps the contract's shape)."""

    acknowledgedAt = serializers.DateTimeField(source="acknowledged_at", allow_null=True)
    acknowledgedBy = serializers.IntegerField(source="acknowledged_by_id", allow_null=True)
    snoozedUntil = serializers.DateTimeField(source="snoozed_until", allow_null=True)
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True)

    class Meta:
        model = Alert
        fields = ["id", "status", "acknowledgedAt", "acknowledgedBy", "snoozedUntil", "resolvedAt"]
        read_only_fields = fields


@body_rules(oneOf=[{"required": ["until"]}, {"required": ["minutes"]}])
class AlertSnoozeInputSerializer(serializers.Serializer):
    """Either an instant (`until`) or a duration (`minutes`); at most 30 days ahead."""

    until = serializers.DateTimeField(required=False)
    minutes = strict.IntegerField(required=False, min_value=1, max_value=30 * 24 * 60)

    def validate(self, attrs: dict) -> dict:
        if ("until" in attrs) == ("minutes" in attrs):
            raise serializers.ValidationError({"until": ["Send either until or minutes."]})
        if "minutes" in attrs:
            attrs["until"] = timezone.now() + dt.timedelta(minutes=attrs.pop("minutes"))
        return attrs


def _webhook_url(value: str) -> str:
    if not value:
        return ""
    try:
        webhook_target(value)
    except UnsafeWebhookURL as exc:
        raise serializers.ValidationError(str(exc)) from exc
    return value


class NotificationPreferenceInputSerializer(serializers.Serializer):
    """PUT replaces the preferences; webhook URLs are write-only secrets: absent keeps, "" or null clears."""

    emailEnabled = strict.BooleanField(source="email_enabled", default=True)
    slackWebhookUrl = strict.CharField(
        source="slack_webhook_url", required=False, allow_blank=True, allow_null=True, max_length=2048
    )
    teamsWebhookUrl = strict.CharField(
        source="teams_webhook_url", required=False, allow_blank=True, allow_null=True, max_length=2048
    )
    inAppEnabled = strict.BooleanField(source="in_app_enabled", default=True)
    minSeverity = serializers.ChoiceField(source="min_severity", choices=Alert.Severity.choices, default="medium")
    timeZone = strict.TimeZoneField(source="time_zone", default="UTC")
    quietHoursStart = LocalTimeField(source="quiet_hours_start", allow_null=True, default=None)
    quietHoursEnd = LocalTimeField(source="quiet_hours_end", allow_null=True, default=None)
    digestEnabled = strict.BooleanField(source="digest_enabled", default=False)

    def validate_slackWebhookUrl(self, value: str | None) -> str:
        return _webhook_url(value or "")

    def validate_teamsWebhookUrl(self, value: str | None) -> str:
        return _webhook_url(value or "")

    def validate(self, attrs: dict) -> dict:
        if (attrs.get("quiet_hours_start") is None) != (attrs.get("quiet_hours_end") is None):
            raise serializers.ValidationError({"quietHoursEnd": ["Set both quiet-hours times, or neither."]})
        return attrs


class NotificationPreferenceOutputSerializer(serializers.Serializer):
    emailEnabled = serializers.BooleanField(source="email_enabled")
    email = serializers.EmailField(
        source="user.email", help_text="Where email notifications go (the account's address)."
    )
    slackWebhookConfigured = serializers.SerializerMethodField()
    teamsWebhookConfigured = serializers.SerializerMethodField()
    inAppEnabled = serializers.BooleanField(source="in_app_enabled")
    minSeverity = serializers.ChoiceField(source="min_severity", choices=Alert.Severity.choices)
    timeZone = serializers.CharField(source="time_zone")
    quietHoursStart = LocalTimeField(source="quiet_hours_start", allow_null=True)
    quietHoursEnd = LocalTimeField(source="quiet_hours_end", allow_null=True)
    digestEnabled = serializers.BooleanField(source="digest_enabled")

    def get_slackWebhookConfigured(self, pref: object) -> bool:
        return bool(pref.slack_webhook_url)

    def get_teamsWebhookConfigured(self, pref: object) -> bool:
        return bool(pref.teams_webhook_url)
