"""The React app's endpoints that compose apps: the dashboard, the ML analytics page, and the
intervention analytics and recommendation (which show the playbooks' proof beside the interventions')."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import AnyObject
from core.auth.permissions import AnyRole
from dashboard.selectors import CHART_EXTRAS, RANGES, dashboard_chart, dashboard_metrics
from interventions.api.serializers import RecommendationSerializer, RecommendInputSerializer
from interventions.selectors import intervention_analytics, recommend_intervention
from playbooks.api.renderers import automation_stats_body
from playbooks.selectors import automation_counts, playbook_analytics, playbook_analytics_by_type
from predictions.api.renderers import ml_analytics_body
from predictions.selectors import ml_analytics

MetricsSerializer = inline_serializer(
    "DashboardMetrics",
    fields={
        "churnRisk": serializers.CharField(),
        "churnChange": serializers.FloatField(),
        "customersAtRisk": serializers.IntegerField(),
        "riskChange": serializers.IntegerField(),
        "activeInterventions": serializers.IntegerField(),
        "successRate": serializers.IntegerField(),
        "revenueSaved": serializers.IntegerField(),
        "revenueIncrease": serializers.IntegerField(),
    },
)
ChartSerializer = inline_serializer(
    "DashboardChart",
    fields={
        "labels": serializers.ListField(child=serializers.CharField()),
        "datasets": serializers.ListField(child=serializers.DictField()),
    },
)


class DashboardMetricsView(APIView):
    @extend_schema(responses=MetricsSerializer)
    def get(self, request: Request) -> Response:
        return Response(dashboard_metrics(user=request.user))


class DashboardChartView(APIView):
    @extend_schema(
        responses=ChartSerializer,
        parameters=[
            OpenApiParameter("range", OpenApiTypes.STR, enum=list(RANGES), description="Default 6m."),
            OpenApiParameter(
                "include",
                {"type": "array", "items": {"type": "string", "enum": list(CHART_EXTRAS)}},
                style="form",
                explode=False,
                description=(
                    "Extra datasets after churn risk % and MRR, comma-separated: "
                    f"{', '.join(CHART_EXTRAS)} (churn rate % per period)."
                ),
            ),
        ],
    )
    def get(self, request: Request) -> Response:
        range_key = request.query_params.get("range", "6m")
        if range_key not in RANGES:
            raise ValidationError({"range": [f"Must be one of {', '.join(RANGES)}."]})
        extras = tuple(name for name in request.query_params.get("include", "").split(",") if name)
        unknown = [name for name in extras if name not in CHART_EXTRAS]
        if unknown:
            raise ValidationError({"include": [f"Unknown dataset {unknown[0]!r}; one of {', '.join(CHART_EXTRAS)}."]})
        return Response(dashboard_chart(user=request.user, range_key=range_key, extras=extras))


class MLAnalyticsView(APIView):
    """The app's ML analytics page: the prediction engine's figures and the playbooks' work, over
    the user's visible active customers."""

    @extend_schema(responses=AnyObject)
    def get(self, request: Request) -> Response:
        automation = automation_stats_body(automation_counts(user=request.user))
        return Response(ml_analytics_body(ml_analytics(user=request.user), intervention_stats=automation))


class InterventionAnalyticsView(APIView):
    """`GET /api/interventions/analytics`: the interventions' figures with the playbooks' proof."""

    @extend_schema(
        responses=inline_serializer(
            "InterventionAnalytics",
            fields={
                "overall_metrics": serializers.DictField(),
                "success_rates_by_type": serializers.ListField(child=serializers.DictField()),
                "retention_analysis": serializers.DictField(),
                "top_performing_interventions": serializers.ListField(child=serializers.DictField()),
                "insights": serializers.ListField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        return Response(intervention_analytics(user=request.user, playbooks=playbook_analytics(user=request.user)))


class RecommendView(APIView):
    """`POST /api/ml/recommend-intervention`: what has worked for customers like this one, the
    playbooks' proof included."""

    permission_classes = [AnyRole]

    @extend_schema(request=RecommendInputSerializer, responses=RecommendationSerializer)
    def post(self, request: Request) -> Response:
        data = RecommendInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        recommendation = recommend_intervention(
            user=request.user, customer_id=data.validated_data["customerId"], playbook_proof=playbook_analytics_by_type
        )
        return Response(RecommendationSerializer(recommendation).data)
