from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.selectors import CHART_EXTRAS, RANGES, dashboard_chart, dashboard_metrics

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
