"""Intervention endpoints: list, create, PATCH, bulk, bulk-apply, outcome. (Their analytics and the
recommendation show playbook proof too: `dashboard/views.py`.)"""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from interventions import selectors, services
from interventions.api.serializers import (
    BulkActionResultSerializer,
    BulkActionSerializer,
    BulkApplyResultSerializer,
    BulkApplySerializer,
    InterventionCreateSerializer,
    InterventionOutputSerializer,
    InterventionUpdateSerializer,
    OutcomeInputSerializer,
)
from interventions.filters import InterventionFilter
from interventions.models import Intervention


class InterventionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = InterventionOutputSerializer
    filterset_class = InterventionFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Intervention.objects.none()
        return selectors.intervention_scope(user=self.request.user).order_by("-created_at", "-id")

    @extend_schema(responses=InterventionOutputSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        intervention = services.intervention_get(user=request.user, intervention_id=pk)
        return Response(InterventionOutputSerializer(intervention).data)

    @extend_schema(request=InterventionCreateSerializer, responses={201: InterventionOutputSerializer})
    def create(self, request: Request) -> Response:
        data = InterventionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        intervention = services.intervention_create(user=request.user, customer_id=fields.pop("customer_id"), **fields)
        return Response(InterventionOutputSerializer(intervention).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=InterventionUpdateSerializer, responses=InterventionOutputSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = InterventionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        intervention = services.intervention_update(user=request.user, intervention_id=pk, **data.validated_data)
        return Response(InterventionOutputSerializer(intervention).data)

    @extend_schema(request=BulkActionSerializer, responses=BulkActionResultSerializer)
    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def bulk(self, request: Request) -> Response:
        data = BulkActionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.intervention_bulk_action(
            user=request.user,
            ids=data.validated_data["taskIds"],
            action=data.validated_data["action"],
            notes=data.validated_data["notes"],
        )
        return Response(
            {
                "success": True,
                "updated": len(updated),
                "total": len(updated),
                "action": data.validated_data["action"],
                "results": [{"id": pk, "status": "success"} for pk in updated],
            }
        )

    @extend_schema(request=BulkApplySerializer, responses=BulkApplyResultSerializer)
    @action(detail=False, methods=["post"], url_path="bulk-apply", filterset_class=None, pagination_class=None)
    def bulk_apply(self, request: Request) -> Response:
        data = BulkApplySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        kind = data.validated_data["interventionType"]
        created = services.intervention_bulk_apply(
            user=request.user,
            customer_ids=data.validated_data["userIds"],
            intervention_type=kind,
            notes=data.validated_data["notes"],
        )
        return Response(
            {"success": True, "message": f"Applied {kind} to {created} users", "updated": created, "total": created}
        )


class OutcomeView(APIView):
    """`POST /api/ml/update-outcome`: record whether an intervention kept the customer."""

    @extend_schema(
        request=OutcomeInputSerializer,
        responses=inline_serializer(
            "OutcomeResult", {"success": serializers.BooleanField(), "message": serializers.CharField()}
        ),
    )
    def post(self, request: Request) -> Response:
        data = OutcomeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.intervention_outcome_record(
            user=request.user,
            customer_id=data.validated_data["customerId"],
            intervention_type=data.validated_data["intervention"],
            success=data.validated_data["success"],
            revenue_impact=data.validated_data.get("revenueImpact"),
        )
        return Response({"success": True, "message": "Outcome updated successfully"})
