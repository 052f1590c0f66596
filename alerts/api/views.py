from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts import selectors, services
from alerts.api.serializers import (
    AlertOutputSerializer,
    AlertSnoozeInputSerializer,
    AlertStatusOutputSerializer,
    NotificationPreferenceInputSerializer,
    NotificationPreferenceOutputSerializer,
)
from alerts.filters import AlertFilter
from alerts.models import Alert


class AlertViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = AlertOutputSerializer
    filterset_class = AlertFilter
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Alert.objects.none()
        return selectors.alert_scope(user=self.request.user).order_by("-created_at", "-id")

    @extend_schema(
        request=None, responses=inline_serializer("AlertReadResult", {"success": serializers.BooleanField()})
    )
    @action(detail=True, methods=["patch"], filterset_class=None)
    def read(self, request: Request, pk: str) -> Response:
        services.alert_mark_read(user=request.user, alert_id=pk)
        return Response({"success": True})

    @extend_schema(request=None, responses=AlertStatusOutputSerializer)
    @action(detail=True, methods=["post"], filterset_class=None)
    def acknowledge(self, request: Request, pk: str) -> Response:
        alert = services.alert_acknowledge(user=request.user, alert_id=pk)
        return Response(AlertStatusOutputSerializer(alert).data)

    @extend_schema(request=AlertSnoozeInputSerializer, responses=AlertStatusOutputSerializer)
    @action(detail=True, methods=["post"], filterset_class=None)
    def snooze(self, request: Request, pk: str) -> Response:
        data = AlertSnoozeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        alert = services.alert_snooze(user=request.user, alert_id=pk, until=data.validated_data["until"])
        return Response(AlertStatusOutputSerializer(alert).data)


class NotificationPreferenceView(APIView):
    """The signed-in user's notification preferences (defaults until first saved)."""

    @extend_schema(responses=NotificationPreferenceOutputSerializer)
    def get(self, request: Request) -> Response:
        pref = selectors.preference_of(user=request.user)
        return Response(NotificationPreferenceOutputSerializer(pref).data)

    @extend_schema(request=NotificationPreferenceInputSerializer, responses=NotificationPreferenceOutputSerializer)
    def put(self, request: Request) -> Response:
        data = NotificationPreferenceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pref = services.notification_preference_set(user=request.user, data=data.validated_data)
        return Response(NotificationPreferenceOutputSerializer(pref).data)
