"""Integration endpoints: the list with health and "sync now".

The signed webhook route is not a DRF view: `integrations.asgi` receives it before Django
(`churnshield/asgi.py`), and `integrations.api.schema` documents it in the OpenAPI schema.
"""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.auth.permissions import IsManagerOrAdmin
from integrations import selectors, services
from integrations.api.serializers import IntegrationOutputSerializer, SyncRunOutputSerializer


class IntegrationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = IntegrationOutputSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet:
        return selectors.integration_list()

    @extend_schema(request=None, responses={202: SyncRunOutputSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsManagerOrAdmin])
    def sync(self, request: Request, pk: str) -> Response:
        """Sync now: opens a run (409 when one is running) and pulls in the background."""
        run = services.sync_now(integration_id=pk)
        return Response(SyncRunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)
