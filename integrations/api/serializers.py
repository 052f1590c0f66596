from rest_framework import serializers

from integrations.models import Integration
from integrations.selectors import public_config


class IntegrationOutputSerializer(serializers.ModelSerializer):
    lastSyncAt = serializers.DateTimeField(source="last_sync_at", allow_null=True)
    config = serializers.SerializerMethodField()

    class Meta:
        model = Integration
        fields = ["id", "name", "type", "status", "lastSyncAt", "config"]
        read_only_fields = fields

    def get_config(self, integration: Integration) -> dict:
        return public_config(integration.config)
