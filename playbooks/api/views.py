"""Playbook endpoints: the contract's trigger, bulk trigger, definitions check, dry run, executions,
and the review queue of customer e-mails."""

import time

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth.permissions import AnyRole
from core.exceptions import NotFoundError
from playbooks import approvals, selectors, services
from playbooks.api.renderers import bulk_trigger_body, dry_run_body, trigger_body
from playbooks.api.serializers import (
    BulkTriggerInputSerializer,
    BulkTriggerOutputSerializer,
    CancelInputSerializer,
    DefinitionInputSerializer,
    DefinitionOutputSerializer,
    DryRunInputSerializer,
    DryRunOutputSerializer,
    EmailReviewApproveInputSerializer,
    EmailReviewDiscardInputSerializer,
    EmailReviewOutputSerializer,
    ExecutionOutputSerializer,
    PlaybookOutputSerializer,
    TriggerInputSerializer,
    TriggerOutputSerializer,
)
from playbooks.definitions import validate_exit_conditions, validate_steps
from playbooks.filters import EmailReviewFilter
from playbooks.models import EmailReview, Playbook, PlaybookExecution


class TriggerView(APIView):
    """`POST /api/v1/playbooks/trigger` (contract)."""

    @extend_schema(request=TriggerInputSerializer, responses=TriggerOutputSerializer)
    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        data = TriggerInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        triggered = services.playbook_trigger(
            user=request.user,
            customer_id=fields.pop("customer_id"),
            playbook_id=fields.pop("playbook_id", None),
            intervention=fields,
        )
        body = trigger_body(triggered, response_ms=(time.perf_counter() - started) * 1000)
        return Response(TriggerOutputSerializer(body).data)


class PlaybookViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Playbooks are book-wide: every role reads them; definitions change in the admin or by import."""

    serializer_class = PlaybookOutputSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet:
        return selectors.playbook_list()

    @extend_schema(request=BulkTriggerInputSerializer, responses=BulkTriggerOutputSerializer)
    @action(detail=False, methods=["post"], url_path="bulk-trigger")
    def bulk_trigger(self, request: Request) -> Response:
        data = BulkTriggerInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        enrolment = services.playbook_bulk_trigger(
            user=request.user,
            playbook_id=data.validated_data["playbookId"],
            customer_ids=data.validated_data["customerIds"],
        )
        return Response(BulkTriggerOutputSerializer(bulk_trigger_body(enrolment)).data)

    @extend_schema(request=DefinitionInputSerializer, responses=DefinitionOutputSerializer)
    @action(detail=False, methods=["post"], permission_classes=[AnyRole])
    def validate(self, request: Request) -> Response:
        """Check a definition without storing it: 400 names the step index and the field."""
        data = DefinitionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        steps = validate_steps(data.validated_data["steps"])
        validate_exit_conditions(data.validated_data.get("exitConditions", []))
        return Response({"valid": True, "steps": steps})

    @extend_schema(request=DryRunInputSerializer, responses=DryRunOutputSerializer)
    @action(detail=False, methods=["post"], url_path="dry-run", permission_classes=[AnyRole])
    def dry_run(self, request: Request) -> Response:
        """Who would enrol today and what each step would do. Writes nothing."""
        data = DryRunInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        playbook = Playbook.objects.filter(pk=data.validated_data["playbookId"]).first()
        if playbook is None:
            raise NotFoundError("Playbook not found")
        answer = selectors.dry_run(
            user=request.user, playbook=playbook, customer_ids=data.validated_data.get("customerIds")
        )
        return Response(DryRunOutputSerializer(dry_run_body(answer)).data)

    @extend_schema(
        responses=inline_serializer(
            "PlaybookAnalytics",
            fields={
                "playbooks": serializers.ListField(child=serializers.DictField()),
                "by_intervention_type": serializers.ListField(child=serializers.DictField()),
            },
        )
    )
    @action(detail=False, methods=["get"])
    def analytics(self, request: Request) -> Response:
        return Response(selectors.playbook_analytics(user=request.user))


class ExecutionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ExecutionOutputSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return PlaybookExecution.objects.none()
        return (
            selectors.execution_scope(user=self.request.user).select_related("playbook").order_by("-started_at", "-id")
        )

    @extend_schema(request=CancelInputSerializer, responses=ExecutionOutputSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        data = CancelInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        execution = services.execution_cancel(user=request.user, execution_id=pk, reason=data.validated_data["reason"])
        return Response(ExecutionOutputSerializer(execution).data)

    @extend_schema(request=None, responses=ExecutionOutputSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        execution = services.execution_retry(user=request.user, execution_id=pk)
        return Response(ExecutionOutputSerializer(execution).data)


class EmailReviewViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Customer e-mails waiting for a person (a CSM sees their own customers'); approve (maybe
    edited) sends it through the playbook, discard skips the step."""

    serializer_class = EmailReviewOutputSerializer
    filterset_class = EmailReviewFilter
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return EmailReview.objects.none()
        return selectors.email_review_scope(user=self.request.user).select_related("decided_by").order_by("-id")

    @extend_schema(request=EmailReviewApproveInputSerializer, responses=EmailReviewOutputSerializer)
    @action(detail=True, methods=["post"], filterset_class=None)
    def approve(self, request: Request, pk: str) -> Response:
        data = EmailReviewApproveInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = approvals.email_review_approve(user=request.user, review_id=pk, **data.validated_data)
        return Response(EmailReviewOutputSerializer(self.get_queryset().get(pk=review.pk)).data)

    @extend_schema(request=EmailReviewDiscardInputSerializer, responses=EmailReviewOutputSerializer)
    @action(detail=True, methods=["post"], filterset_class=None)
    def discard(self, request: Request, pk: str) -> Response:
        data = EmailReviewDiscardInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = approvals.email_review_discard(user=request.user, review_id=pk, note=data.validated_data["note"])
        return Response(EmailReviewOutputSerializer(self.get_queryset().get(pk=review.pk)).data)
