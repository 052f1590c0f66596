from rest_framework import serializers

from core.api import fields as strict


class CustomerIdSerializer(serializers.Serializer):
    # The contract: `customerId` must be a JSON integer; the string "12" is a 400.
    customerId = strict.IdField()


class CustomerIdsSerializer(serializers.Serializer):
    customerIds = serializers.ListField(child=strict.IdField(), min_length=1, max_length=1000)
