"""Playbook shapes: camelCase, explicit fields, separate input and output."""

from rest_framework import serializers

from core.api import fields as strict
from core.api.schema_hooks import body_rules
from interventions.api.serializers import BoundedDateTimeField
from interventions.models import Intervention
from playbooks.definitions import MAX_STEPS
from playbooks.models import EmailReview, Playbook, PlaybookExecution


class PlaybookOutputSerializer(serializers.ModelSerializer):
    interventionType = serializers.CharField(source="intervention_type")
    holdoutShare = serializers.FloatField(source="holdout_share")
    reenrolDays = serializers.IntegerField(source="reenrol_days")
    exitConditions = serializers.JSONField(source="exit_conditions")
    isActive = serializers.BooleanField(source="is_active")
    createdAt = serializers.DateTimeField(source="created_at")
    steps = serializers.JSONField()
    causes = serializers.JSONField()
    rules = serializers.SerializerMethodField()

    class Meta:
        model = Playbook
        fields = [
            "id",
            "name",
            "description",
            "interventionType",
            "causes",
            "holdoutShare",
            "reenrolDays",
            "exitConditions",
            "isActive",
            "createdAt",
            "steps",
            "rules",
        ]
        read_only_fields = fields

    def get_rules(self, playbook: Playbook) -> list[dict]:
        return [
            {"id": r.pk, "kind": r.kind, "params": r.params, "segment": r.segment, "isActive": r.is_active}
            for r in playbook.rules.all()
        ]


class ExecutionOutputSerializer(serializers.ModelSerializer):
    playbookId = serializers.IntegerField(source="playbook_id")
    playbook = serializers.CharField(source="playbook.name")
    customerId = serializers.IntegerField(source="customer_id")
    startedAt = serializers.DateTimeField(source="started_at")
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)  # null while running
    isHoldout = serializers.BooleanField(source="is_holdout")
    currentStep = serializers.CharField(source="current_step")
    nextRunAt = serializers.DateTimeField(source="next_run_at", allow_null=True)  # null once finished
    interventionId = serializers.IntegerField(source="intervention_id", allow_null=True)
    steps = serializers.SerializerMethodField()

    class Meta:
        model = PlaybookExecution
        fields = [
            "id",
            "playbookId",
            "playbook",
            "customerId",
            "status",
            "trigger",
            "isHoldout",
            "startedAt",
            "completedAt",
            "currentStep",
            "nextRunAt",
            "error",
            "interventionId",
            "steps",
        ]
        read_only_fields = fields

    def get_steps(self, execution: PlaybookExecution) -> list[dict]:
        return execution.result.get("steps", [])


@body_rules(anyOf=[{"required": ["playbookId"]}, {"required": ["type"]}])
class TriggerInputSerializer(serializers.Serializer):
    """`{customerId, playbookId}`, or the app's intervention body (`type`, `priority`, …).

    Without `playbookId` the playbook is the active one whose intervention type (or name) is `type`.
    Validated data is keyed by the service's names (`source`).
    """

    customerId = strict.IdField(source="customer_id")
    playbookId = strict.IdField(required=False, source="playbook_id")
    type = strict.CharField(max_length=200, required=False)
    priority = serializers.ChoiceField(choices=Intervention.Priority.choices, required=False)
    assignedCsm = strict.CharField(max_length=200, allow_blank=True, required=False, source="assigned_csm")
    description = strict.CharField(max_length=10_000, allow_blank=True, required=False)
    nextAction = strict.CharField(max_length=1_000, allow_blank=True, required=False, source="next_action")
    notes = strict.CharField(max_length=10_000, allow_blank=True, required=False)
    dueDate = BoundedDateTimeField(allow_null=True, required=False, source="due_date")

    def validate(self, attrs: dict) -> dict:
        if "playbook_id" not in attrs and not attrs.get("type"):
            raise serializers.ValidationError({"playbookId": ["give playbookId, or the intervention type"]})
        return attrs


class AiRecommendationSerializer(serializers.Serializer):
    recommendedType = serializers.CharField()
    priority = serializers.CharField()
    estimatedSuccess = serializers.FloatField()
    reasoning = serializers.CharField()


class TriggerOutputSerializer(serializers.Serializer):
    interventionId = serializers.IntegerField()
    executionId = serializers.IntegerField()
    status = serializers.CharField()
    estimatedCompletion = serializers.DateTimeField()
    responseTime = serializers.FloatField()
    playbookType = serializers.CharField()
    aiRecommendation = AiRecommendationSerializer(allow_null=True)


class BulkTriggerInputSerializer(serializers.Serializer):
    playbookId = strict.IdField()
    customerIds = serializers.ListField(child=strict.IdOrDigitsField(), min_length=1, max_length=1000)


class BulkTriggerOutputSerializer(serializers.Serializer):
    playbookId = serializers.IntegerField()
    requested = serializers.IntegerField()
    enrolled = serializers.IntegerField()
    skipped = serializers.ListField(child=serializers.IntegerField())
    executionIds = serializers.ListField(child=serializers.IntegerField())


class DefinitionInputSerializer(serializers.Serializer):
    steps = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=MAX_STEPS)
    exitConditions = serializers.ListField(child=serializers.DictField(), required=False)


class DefinitionOutputSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    steps = serializers.ListField(child=serializers.DictField())


class DryRunInputSerializer(serializers.Serializer):
    playbookId = strict.IdField()
    customerIds = serializers.ListField(child=strict.IdOrDigitsField(), max_length=1000, required=False)


class DryRunOutputSerializer(serializers.Serializer):
    playbookId = serializers.IntegerField()
    playbook = serializers.CharField()
    asOf = serializers.DateTimeField()
    wouldEnrol = serializers.IntegerField()
    excluded = serializers.IntegerField()
    customers = serializers.ListField(child=serializers.DictField())


class CancelInputSerializer(serializers.Serializer):
    reason = strict.CharField(max_length=1000, allow_blank=True, required=False, default="")


class EmailReviewOutputSerializer(serializers.ModelSerializer):
    executionId = serializers.IntegerField(source="execution_id")
    stepKey = serializers.CharField(source="step_key")
    playbookId = serializers.IntegerField(source="playbook_id")
    playbook = serializers.CharField(source="playbook.name")
    customerId = serializers.IntegerField(source="customer_id")
    customer = serializers.CharField(source="customer.name")
    isEdited = serializers.BooleanField(source="is_edited")
    createdAt = serializers.DateTimeField(source="created_at")
    decidedAt = serializers.DateTimeField(source="decided_at", allow_null=True)  # null while pending
    decidedBy = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    sentAt = serializers.DateTimeField(source="sent_at", allow_null=True)  # null until it went out

    class Meta:
        model = EmailReview
        fields = [
            "id",
            "executionId",
            "stepKey",
            "playbookId",
            "playbook",
            "customerId",
            "customer",
            "to",
            "subject",
            "body",
            "status",
            "reason",
            "isEdited",
            "createdAt",
            "decidedAt",
            "decidedBy",
            "sentAt",
            "note",
        ]
        read_only_fields = fields


class EmailReviewApproveInputSerializer(serializers.Serializer):
    """Optional edits: the e-mail goes out with these instead of the queued text."""

    subject = strict.CharField(max_length=500, required=False)
    body = strict.CharField(max_length=20_000, required=False)


class EmailReviewDiscardInputSerializer(serializers.Serializer):
    note = strict.CharField(max_length=1000, allow_blank=True, required=False, default="")
