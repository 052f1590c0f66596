"""`ws/alerts`: the live alert feed (protocol in docs/alert-feed.md).

Connect: one credential, in this order: a single-use `?ticket=` from `POST /api/alerts/ws-ticket`
(spent by the attempt, whatever follows), the `cs_access` sign-in cookie, or a Django admin
session; and the Origin must be trusted (as for cookie-authenticated API writes). A refused
handshake is an HTTP 403. The server joins the
user's groups before it accepts, so nothing broadcast after the backlog is read can be missed.
"""

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.auth import get_user as session_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from rest_framework_simplejwt.exceptions import AuthenticationFailed, TokenError

from alerts import realtime
from core.auth.authentication import JWTBearerOrCookieAuthentication
from core.auth.roles import sees_all_customers, user_with_role

logger = logging.getLogger(__name__)

# Close codes (documented in docs/alert-feed.md).
CLOSE_SESSION_EXPIRED = 4001  # the access token / ticket's sign-in / admin session ran out
CLOSE_SIGNED_OUT = 4002  # the user signed out (API logout or admin logout)
CLOSE_BAD_MESSAGE = 4400  # the client sent something that is not a valid protocol message
CLOSE_TOO_SLOW = 4408  # live alerts piled up while the client never sent its resume message
# Ids remembered per connection so a live alert that was also in the backlog (or that reached
# the socket through both the user's group and the all-alerts group) is sent once.
SENT_MEMORY = 20_000
# Live alerts held per connection while the client replays its backlog (beyond: close 4408; the
# client reconnects and resumes, losing nothing).
PENDING_LIMIT = 5000


def origin_allowed(scope: dict[str, Any]) -> bool:
    """The same rule as cookie-authenticated API writes: a TRUSTED_ORIGINS entry, or the
    server's own origin on a host in ALLOWED_HOSTS. No Origin at all is refused."""
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/")
    if not origin or origin == "null":
        return False
    if origin in settings.TRUSTED_ORIGINS:
        return True
    host = headers.get(b"host", b"").decode("latin-1")
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return origin == f"{scheme}://{host}"


@database_sync_to_async
def _jwt_identity(raw: str) -> tuple[Any, dt.datetime] | None:
    """The user and token expiry for a `cs_access` cookie, through the API's own validation."""
    auth = JWTBearerOrCookieAuthentication()
    try:
        validated = auth.get_validated_token(raw.encode())
        user = auth.get_user(validated)
    except (TokenError, AuthenticationFailed) as exc:  # InvalidToken is an AuthenticationFailed
        logger.debug("ws/alerts: cookie token refused: %s", exc)
        return None
    return user, dt.datetime.fromtimestamp(validated["exp"], tz=dt.UTC)


@database_sync_to_async
def _user(user_id: int) -> Any | None:
    user = user_with_role(user_id)
    return user if user is not None and user.is_active else None


@database_sync_to_async
def _session_expiry(session: Any) -> dt.datetime:
    return session.get_expiry_date()


@database_sync_to_async
def _sees_all(user: Any) -> bool:
    return sees_all_customers(user)


@database_sync_to_async
def _backlog(user: Any, after_id: int | None) -> tuple[list[dict[str, Any]], bool]:
    return realtime.alert_backlog(user=user, after_id=after_id)


async def authenticate(scope: dict[str, Any]) -> tuple[Any, dt.datetime] | None:
    """(user, session expiry) from the ticket, else the access cookie, else the admin session."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        # A ticket that does not work is a refusal, never a fall-back to another credential.
        claimed = await realtime.ws_ticket_consume(query["ticket"][0])
        if claimed is None:
            return None
        user_id, session_expires_at = claimed
        user = await _user(user_id)
        return (user, session_expires_at) if user is not None else None
    raw = scope.get("cookies", {}).get(settings.AUTH_COOKIE_ACCESS)
    if raw:
        identity = await _jwt_identity(raw)
        if identity is not None:
            return identity
    session = scope.get("session")
    if session is not None and session.session_key:
        signed_in = await session_user(scope)  # Django's own session checks (auth hash, backend)
        user = await _user(signed_in.pk) if signed_in.is_authenticated else None
        return (user, await _session_expiry(session)) if user is not None else None
    return None


class AlertFeedConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.joined: list[str] = []
        self.expiry_task: asyncio.Task | None = None
        # Credentials first, so that a ticket is spent by any attempt, refused or not: one seen in
        # a log or a proxy's history must not open a socket from elsewhere within its 30 s.
        identity = await authenticate(self.scope)
        if identity is None or not origin_allowed(self.scope):
            await self.close()
            return
        self.user, expires_at = identity
        if expires_at <= timezone.now():
            await self.close()
            return
        self.sent: OrderedDict[int, None] = OrderedDict()
        self.pending: list[dict[str, Any]] | None = []  # live alerts that arrive before the resume
        # Join first, read the backlog later: an alert committed in between is in one or both.
        self.joined = [realtime.user_group(self.user.pk)]
        if await _sees_all(self.user):
            self.joined.append(realtime.ALL_GROUP)
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.expiry_task = asyncio.create_task(self._close_at(expires_at))

    async def disconnect(self, code: int) -> None:
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _close_at(self, expires_at: dt.datetime) -> None:
        await asyncio.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()))
        await self.close(code=CLOSE_SESSION_EXPIRED)

    # --- client → server ------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        try:
            content = orjson.loads(text_data or b"")
        except orjson.JSONDecodeError:
            await self.close(code=CLOSE_BAD_MESSAGE)
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        last_id = content.get("lastId", "missing") if isinstance(content, dict) else "missing"
        valid_id = last_id is None or (isinstance(last_id, int) and not isinstance(last_id, bool) and last_id >= 0)
        # `resume` is only valid before the feed is live (a later one could skip ids).
        if self.pending is None or not valid_id or content.get("type") != "resume":
            await self.close(code=CLOSE_BAD_MESSAGE)
            return
        backlog, truncated = await _backlog(self.user, last_id)
        sent = 0
        for alert in backlog:
            sent += await self._send_alert(alert)
        if truncated:
            # More to replay: live alerts stay held back, so the client's highest id stays the
            # backlog's and its next `resume` (from `lastId`) continues where this page ended.
            await self.send_json({"type": "ready", "lastId": backlog[-1]["id"], "sent": sent, "truncated": True})
            return
        # Live alerts held back until now go after the backlog; the ones it already held are skipped.
        pending, self.pending = self.pending, None
        for alert in pending:
            sent += await self._send_alert(alert)
        newest = max((a["id"] for a in [*backlog, *pending]), default=last_id)
        await self.send_json({"type": "ready", "lastId": newest, "sent": sent, "truncated": False})

    # --- channel layer → client -----------------------------------------------------------------

    async def alert_created(self, event: dict[str, Any]) -> None:
        if self.pending is not None:
            if len(self.pending) >= PENDING_LIMIT:
                await self.close(code=CLOSE_TOO_SLOW)
                return
            self.pending.append(event["alert"])
            return
        await self._send_alert(event["alert"])

    async def session_ended(self, event: dict[str, Any]) -> None:
        await self.close(code=CLOSE_SIGNED_OUT)

    async def _send_alert(self, alert: dict[str, Any]) -> int:
        if alert["id"] in self.sent:
            return 0
        self.sent[alert["id"]] = None
        if len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)
        await self.send_json({"type": "alert", "alert": alert})
        return 1

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return orjson.dumps(content).decode()
