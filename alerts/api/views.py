from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alerts import selectors, services
from alerts.api.serializers import AlertOutputSerializer
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
