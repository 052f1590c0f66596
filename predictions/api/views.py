from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from predictions.models import ChurnCause
from predictions.selectors import churn_cause_rows

ChurnCauseSerializer = inline_serializer(
    "ChurnCause",
    many=True,
    fields={
        "id": serializers.IntegerField(),
        "cause": serializers.CharField(),
        "count": serializers.IntegerField(),
        "percent": serializers.IntegerField(),
        "impact": serializers.ChoiceField(choices=ChurnCause.Impact.choices),
    },
)


class ChurnCauseListView(APIView):
    """Aggregated churn root causes (a short list: one row per known cause, not paginated)."""

    @extend_schema(responses=ChurnCauseSerializer)
    def get(self, request: Request) -> Response:
        rows = churn_cause_rows(user=request.user)
        return Response(rows, headers={"X-Total-Count": str(len(rows))})
