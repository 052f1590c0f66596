"""Integration endpoints: the list with health, "sync now", and the signed webhook receiver."""

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from churnshield.auth.permissions import IsManagerOrAdmin
from integrations import selectors, services
from integrations.api.serializers import (
    IntegrationOutputSerializer,
    SyncRunOutputSerializer,
    WebhookAcceptedSerializer,
)
from integrations.connectors.base import Delivery, SignatureError


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


class InvalidSignature(APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The webhook signature is invalid."
    default_code = "invalid_signature"


class InvalidPayload(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The body is not an event of this provider."
    default_code = "invalid_payload"


class WebhookView(APIView):
    """`POST /api/webhooks/<provider>/<integration id>`.

    Authenticated by the provider's signature over the raw body, not by a JWT: providers cannot
    hold our tokens, and the signature (plus a ±5 min timestamp where the scheme signs one, and
    the event-id dedupe) proves origin, integrity and freshness. A bad signature writes nothing.
    """

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: WebhookAcceptedSerializer,
            400: OpenApiResponse(description="Signed, but not UTF-8 JSON of the provider's event shape."),
            401: OpenApiResponse(description="Bad, missing or stale signature (code says which)."),
            404: OpenApiResponse(description="No integration of this provider with this id."),
            413: OpenApiResponse(description="Body over DATA_UPLOAD_MAX_MEMORY_SIZE; refused unread."),
        },
        parameters=[
            OpenApiParameter(
                "provider", str, OpenApiParameter.PATH, enum=["stripe", "hubspot", "zendesk", "segment", "generic"]
            ),
            OpenApiParameter("integration_id", int, OpenApiParameter.PATH),
        ],
        auth=[],
    )
    def post(self, request: Request, provider: str, integration_id: int) -> Response:
        raw = request._request  # the raw body, before any parser touches it
        delivery = Delivery(
            body=raw.body,  # over DATA_UPLOAD_MAX_MEMORY_SIZE: RequestDataTooBig → 413 (api/errors.py)
            headers={key.lower(): value for key, value in raw.headers.items()},
            method=raw.method or "POST",
            url=raw.build_absolute_uri(),
        )
        try:
            received = services.webhook_receive(provider=provider, integration_id=integration_id, delivery=delivery)
        except SignatureError as error:
            if error.code == "invalid_payload":  # signed by the provider, but not an event we can read
                raise InvalidPayload(str(error), error.code) from error
            raise InvalidSignature(str(error), error.code) from error
        return Response({"received": received.accepted})
