"""Intervention shapes: camelCase fields named explicitly (no mass assignment)."""

import datetime as dt

from rest_framework import serializers

from interventions.models import Intervention
from interventions.services import BULK_ACTIONS

MAX_ID = 2**31 - 1
# Dates the scoring pipeline can hold (pandas nanosecond timestamps end in 1677 and 2262): a
# fuzzed `completedAt` in year 528 used to make every later prediction for the customer a 500.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


class BoundedDateTimeField(serializers.DateTimeField):
    def to_internal_value(self, value):
        result = super().to_internal_value(value)
        if not EARLIEST <= result < LATEST:
            raise serializers.ValidationError("Must be between 1970 and 2200.")
        return result


class InterventionOutputSerializer(serializers.ModelSerializer):
    customerId = serializers.IntegerField(source="customer_id")
    assignedCsm = serializers.CharField(source="assigned_csm")
    nextAction = serializers.CharField(source="next_action")
    dueDate = serializers.DateTimeField(source="due_date", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)

    class Meta:
        model = Intervention
        fields = [
            "id",
            "customerId",
            "type",
            "status",
            "priority",
            "assignedCsm",
            "description",
            "nextAction",
            "dueDate",
            "createdAt",
            "completedAt",
            "notes",
            "outcome",
        ]
        read_only_fields = fields


class _InterventionFields(serializers.Serializer):
    type = serializers.CharField(max_length=200)
    status = serializers.ChoiceField(choices=Intervention.Status.choices)
    priority = serializers.ChoiceField(choices=Intervention.Priority.choices)
    assignedCsm = serializers.CharField(max_length=200, allow_blank=True)
    description = serializers.CharField(max_length=10_000, allow_blank=True)
    nextAction = serializers.CharField(max_length=1_000, allow_blank=True)
    notes = serializers.CharField(max_length=10_000, allow_blank=True)
    dueDate = BoundedDateTimeField(allow_null=True)
    completedAt = BoundedDateTimeField(allow_null=True)
    outcome = serializers.ChoiceField(choices=Intervention.Outcome.choices, allow_null=True)


class InterventionCreateSerializer(_InterventionFields):
    customerId = serializers.IntegerField(min_value=1, max_value=MAX_ID)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if name not in ("customerId", "type"):
                field.required = False


class InterventionUpdateSerializer(_InterventionFields):
    """PATCH: every field optional; `id`, `customerId` and `createdAt` are not writable."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


class LenientIdField(serializers.IntegerField):
    """The app sends task ids as strings; accept "12" and 12 alike."""

    def __init__(self, **kwargs) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


class BulkActionSerializer(serializers.Serializer):
    taskIds = serializers.ListField(child=LenientIdField(), min_length=1, max_length=1000)
    action = serializers.ChoiceField(choices=BULK_ACTIONS)
    notes = serializers.CharField(max_length=10_000, allow_blank=True, required=False, default="")


class BulkActionResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    updated = serializers.IntegerField()
    total = serializers.IntegerField()
    action = serializers.CharField()
    results = serializers.ListField(child=serializers.DictField())


class BulkApplySerializer(serializers.Serializer):
    userIds = serializers.ListField(child=LenientIdField(), min_length=1, max_length=1000)
    interventionType = serializers.CharField(max_length=200)
    notes = serializers.CharField(max_length=10_000, allow_blank=True, required=False, default="")


class BulkApplyResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    updated = serializers.IntegerField()
    total = serializers.IntegerField()


class OutcomeInputSerializer(serializers.Serializer):
    customerId = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    intervention = serializers.CharField(max_length=200)
    success = serializers.BooleanField()
    revenueImpact = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True)


class RecommendInputSerializer(serializers.Serializer):
    customerId = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class RecommendationSerializer(serializers.Serializer):
    type = serializers.CharField()
    priority = serializers.CharField()
    estimatedSuccess = serializers.FloatField()
    estimatedRevenueSaved = serializers.FloatField()
    description = serializers.CharField()
    reasoning = serializers.CharField()
