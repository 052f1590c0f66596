from rest_framework import serializers


class StrictIntegerField(serializers.IntegerField):
    """The contract: `customerId` must be a JSON integer; the string "12" is a 400."""

    def to_internal_value(self, data: object) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class CustomerIdSerializer(serializers.Serializer):
    customerId = StrictIntegerField(min_value=1, max_value=2**31 - 1)


class CustomerIdsSerializer(serializers.Serializer):
    customerIds = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=2**31 - 1), min_length=1, max_length=1000
    )
