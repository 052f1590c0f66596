"""Prediction endpoints: predict, explain, batch-predict, feature importance, model metrics."""

import time

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import AnyObject
from core.auth.permissions import AnyRole
from core.auth.roles import can_write
from customers.selectors import customer_get
from predictions import selectors
from predictions.api import renderers
from predictions.api.serializers import CustomerIdSerializer, CustomerIdsSerializer
from predictions.models import ChurnCause
from predictions.selectors import churn_cause_rows
from predictions.services.scoring import score_one

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
CausesSerializer = inline_serializer(
    "CausesExplanation",
    fields={
        "causes": inline_serializer(
            "CauseExplanation",
            many=True,
            fields={
                "name": serializers.CharField(),
                "description": serializers.CharField(),
                "impact": serializers.FloatField(),
                "category": serializers.CharField(),
                "icon": serializers.CharField(),
            },
        ),
        "responseTime": serializers.FloatField(),
    },
)
PredictSerializer = inline_serializer(
    "ChurnPredictResult",
    fields={
        "customerId": serializers.IntegerField(),
        "churnProbability": serializers.CharField(),
        "riskLevel": serializers.CharField(),
        "topCauses": serializers.ListField(child=serializers.DictField()),
        "responseTime": serializers.FloatField(),
        "confidence": serializers.CharField(),
        "recommendedActions": serializers.ListField(child=serializers.CharField()),
    },
)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class ChurnCauseListView(APIView):
    """Aggregated churn root causes (a short list: one row per known cause, not paginated)."""

    @extend_schema(responses=ChurnCauseSerializer)
    def get(self, request: Request) -> Response:
        rows = churn_cause_rows(user=request.user)
        return Response(rows, headers={"X-Total-Count": str(len(rows))})


class ChurnPredictView(APIView):
    """One customer's churn prediction. A role that may write re-scores it with the champion and
    stores the result when its inputs changed since the latest prediction; otherwise (and always
    for viewers) the latest stored prediction is the answer: readers never write."""

    permission_classes = [AnyRole]

    @extend_schema(request=CustomerIdSerializer, responses=PredictSerializer)
    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        data = CustomerIdSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        prediction = score_one(
            customer_id=data.validated_data["customerId"], visible_to=request.user, write=can_write(request.user)
        )
        return Response({**renderers.prediction_body(prediction), "responseTime": _elapsed_ms(started)})


class CausesExplainView(APIView):
    """GET: causes over the user's book of business; POST {customerId}: one customer's causes."""

    permission_classes = [AnyRole]

    @extend_schema(responses=CausesSerializer)
    def get(self, request: Request) -> Response:
        started = time.perf_counter()
        return Response({"causes": selectors.book_causes(user=request.user), "responseTime": _elapsed_ms(started)})

    @extend_schema(request=CustomerIdSerializer, responses=CausesSerializer)
    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        data = CustomerIdSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = customer_get(user=request.user, customer_id=data.validated_data["customerId"])
        return Response({"causes": selectors.customer_causes(customer.pk), "responseTime": _elapsed_ms(started)})


class BatchPredictView(APIView):
    """Stored latest predictions for up to 1,000 customers (the app calls it on every load)."""

    permission_classes = [AnyRole]

    @extend_schema(request=CustomerIdsSerializer, responses=AnyObject)
    def post(self, request: Request) -> Response:
        data = CustomerIdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rows = selectors.stored_predictions(user=request.user, customer_ids=data.validated_data["customerIds"])
        return Response({"predictions": [renderers.stored_prediction_body(row) for row in rows]})


class FeatureImportanceView(APIView):
    @extend_schema(responses=AnyObject)
    def get(self, request: Request) -> Response:
        return Response({"features": [renderers.feature_importance_body(f) for f in selectors.feature_importance()]})


class ModelMetricsLatestView(APIView):
    """The champion's model card (snake_case, contract)."""

    @extend_schema(responses=AnyObject)
    def get(self, request: Request) -> Response:
        return Response(selectors.model_metrics_latest())
