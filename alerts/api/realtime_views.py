"""`POST /api/alerts/ws-ticket`: a short-lived, single-use ticket for the `ws/alerts` URL."""

import datetime as dt

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts.realtime import ws_ticket_issue
from core.auth.permissions import AnyRole

WsTicketSerializer = inline_serializer(
    "AlertWsTicket", fields={"ticket": serializers.CharField(), "expiresIn": serializers.IntegerField()}
)


class AlertWsTicketView(APIView):
    """For clients that cannot send the sign-in cookie with the WebSocket handshake (another
    origin, a native app): open `ws/alerts?ticket=<ticket>` within `expiresIn` seconds, once."""

    permission_classes = [AnyRole]  # every role may watch its own feed

    @extend_schema(request=None, responses=WsTicketSerializer)
    def post(self, request: Request) -> Response:
        # The socket may live as long as the sign-in that asked for it, not longer.
        session_expires_at = dt.datetime.fromtimestamp(request.auth["exp"], tz=dt.UTC)
        ticket, expires_in = ws_ticket_issue(user_id=request.user.pk, session_expires_at=session_expires_at)
        return Response({"ticket": ticket, "expiresIn": expires_in})
