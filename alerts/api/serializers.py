from rest_framework import serializers

from alerts.models import Alert


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
