from django.utils import timezone
from rest_framework import serializers

from integrations.models import Integration, SyncRun
from integrations.selectors import public_config


class IntegrationOutputSerializer(serializers.ModelSerializer):
    """An integration and its health. `config` never carries secrets."""

    lastSyncAt = serializers.DateTimeField(source="last_sync_at", allow_null=True)
    config = serializers.SerializerMethodField()
    provider = serializers.CharField()
    lagSeconds = serializers.SerializerMethodField(help_text="Seconds since the last successful sync.")
    consecutiveFailures = serializers.IntegerField(source="consecutive_failures")
    failedRuns24h = serializers.IntegerField(source="failed_runs_24h")
    latestError = serializers.CharField(source="last_error")
    latestErrorAt = serializers.DateTimeField(source="last_error_at", allow_null=True)
    webhookBacklog = serializers.IntegerField(source="webhook_backlog")
    deadLetters = serializers.IntegerField(source="dead_letters")

    class Meta:
        model = Integration
        fields = [
            "id",
            "name",
            "type",
            "status",
            "lastSyncAt",
            "config",
            "provider",
            "lagSeconds",
            "consecutiveFailures",
            "failedRuns24h",
            "latestError",
            "latestErrorAt",
            "webhookBacklog",
            "deadLetters",
        ]
        read_only_fields = fields

    def get_config(self, integration: Integration) -> dict:
        return public_config(integration.config)

    def get_lagSeconds(self, integration: Integration) -> float | None:
        if integration.last_sync_at is None:
            return None
        return round((timezone.now() - integration.last_sync_at).total_seconds(), 1)


class SyncRunOutputSerializer(serializers.ModelSerializer):
    integrationId = serializers.IntegerField(source="integration_id")
    startedAt = serializers.DateTimeField(source="started_at")
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "integrationId",
            "trigger",
            "status",
            "startedAt",
            "finishedAt",
            "fetched",
            "created",
            "updated",
            "failed",
            "error",
        ]
        read_only_fields = fields
