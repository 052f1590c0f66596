"""Intervention shapes: camelCase fields named explicitly (no mass assignment)."""

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import fields as strict
from interventions.models import Intervention
from interventions.services import BULK_ACTIONS

MAX_ID = 2**31 - 1
# Dates the scoring pipeline can hold (pandas nanosecond timestamps end in 1677 and 2262): a
# fuzzed `completedAt` in year 528 used to make every later prediction for the customer a 500.
# The year as written (offsets move the UTC instant by at most a day, well inside that range).
BOUNDED_YEAR_PATTERN = r"^(19[7-9][0-9]|2[01][0-9][0-9])-"


@extend_schema_field({"type": "string", "format": "date-time", "pattern": BOUNDED_YEAR_PATTERN})
class BoundedDateTimeField(serializers.DateTimeField):
    def to_internal_value(self, value):
        if isinstance(value, str) and not re.match(BOUNDED_YEAR_PATTERN, value):
            raise serializers.ValidationError("Must be between 1970 and 2200.")
        return super().to_internal_value(value)


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
    """The fields a client may write; validated data is keyed by column name (`source`)."""

    type = strict.CharField(max_length=200)
    status = serializers.ChoiceField(choices=Intervention.Status.choices)
    priority = serializers.ChoiceField(choices=Intervention.Priority.choices)
    assignedCsm = strict.CharField(max_length=200, allow_blank=True, source="assigned_csm")
    description = strict.CharField(max_length=10_000, allow_blank=True)
    nextAction = strict.CharField(max_length=1_000, allow_blank=True, source="next_action")
    notes = strict.CharField(max_length=10_000, allow_blank=True)
    dueDate = BoundedDateTimeField(allow_null=True, source="due_date")
    completedAt = BoundedDateTimeField(allow_null=True, source="completed_at")
    outcome = serializers.ChoiceField(choices=Intervention.Outcome.choices, allow_null=True)


class InterventionCreateSerializer(_InterventionFields):
    customerId = strict.IdField(source="customer_id")

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


class BulkActionSerializer(serializers.Serializer):
    taskIds = serializers.ListField(child=strict.IdOrDigitsField(), min_length=1, max_length=1000)
    action = serializers.ChoiceField(choices=BULK_ACTIONS)
    notes = strict.CharField(max_length=10_000, allow_blank=True, required=False, default="")


class BulkActionResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    updated = serializers.IntegerField()
    total = serializers.IntegerField()
    action = serializers.CharField()
    results = serializers.ListField(child=serializers.DictField())


class BulkApplySerializer(serializers.Serializer):
    userIds = serializers.ListField(child=strict.IdOrDigitsField(), min_length=1, max_length=1000)
    interventionType = strict.CharField(max_length=200)
    notes = strict.CharField(max_length=10_000, allow_blank=True, required=False, default="")


class BulkApplyResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    updated = serializers.IntegerField()
    total = serializers.IntegerField()


class OutcomeInputSerializer(serializers.Serializer):
    customerId = strict.IdField()
    intervention = strict.CharField(max_length=200)
    success = strict.BooleanField()
    revenueImpact = strict.MoneyField(required=False, allow_null=True)


class RecommendInputSerializer(serializers.Serializer):
    customerId = strict.IdField()


class RecommendationSerializer(serializers.Serializer):
    """Renders `interventions.selectors.Recommendation`."""

    type = serializers.CharField()
    priority = serializers.CharField()
    estimatedSuccess = serializers.FloatField(source="estimated_success")
    estimatedRevenueSaved = serializers.FloatField(source="estimated_revenue_saved")
    description = serializers.CharField()
    reasoning = serializers.CharField()
