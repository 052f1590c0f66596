"""The live alert feed's server side: fan-out to channel-layer groups, WebSocket tickets, backlog reads.

Groups: every signed-in socket joins `alerts.user.<id>` (alerts on the customers that user owns,
plus control messages such as "you signed out"); users who see every customer (admins, managers,
viewers — the same rule as `alerts.selectors.alert_scope`) also join `alerts.all`, which receives
every alert, including alerts without a customer. The protocol is documented in
docs/alert-feed.md.
"""

import asyncio
import datetime as dt
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import RedisError

from alerts.api.serializers import AlertOutputSerializer
from alerts.models import Alert
from alerts.selectors import alert_scope
from core.exceptions import ServiceUnavailableError

logger = logging.getLogger(__name__)

ALL_GROUP = "alerts.all"
# Backlog bounds: at most BACKLOG_LIMIT alerts after the client's last id per resume (the client
# asks again from its new last id when `truncated` is true), and re-sent late commits (below).
BACKLOG_LIMIT = 1000
# Ids are assigned at insert, rows become visible at commit: an alert with a lower id can commit
# (and be broadcast) after one with a higher id. A client that saw the higher one live and was
# disconnected when the lower one was broadcast would skip it by id alone, so a resume also
# re-sends alerts at or below the client's last id created within this window (the client
# de-duplicates by id).
LATE_COMMIT_WINDOW = dt.timedelta(seconds=60)
LATE_COMMIT_LIMIT = 500
# First connection (no last id): the newest unread alerts, so the bell has something to show.
RECENT_LIMIT = 20
TICKET_SECONDS = 30
_TICKET_PREFIX = "alerts:ws-ticket:"
_BROADCAST_CHUNK = 1000


def user_group(user_id: int) -> str:
    return f"alerts.user.{user_id}"


def alert_payloads(queryset: Iterable[Alert]) -> list[dict[str, Any]]:
    """The REST alert shape (what `GET /api/alerts` returns), as plain JSON-ready dicts."""
    return AlertOutputSerializer(list(queryset), many=True).data


def broadcast_alerts(alert_ids: list[int]) -> None:
    """Send these (committed) alerts to their owner's group and to the all-alerts group.

    Called after commit (`transaction.on_commit`): a failure here loses nothing, because the row
    exists and a client that misses the live message gets it from the resume backlog.
    """
    ids = [int(pk) for pk in alert_ids if pk is not None]
    if not ids:
        return
    messages: list[tuple[str, dict[str, Any]]] = []
    for start in range(0, len(ids), _BROADCAST_CHUNK):
        rows = list(
            Alert.objects.filter(pk__in=ids[start : start + _BROADCAST_CHUNK])
            # The feed follows the REST scope (the customer's owner), not the notification recipient.
            .annotate(customer_owner_id=F("customer__owner_id"))
            .order_by("pk")
        )
        for row, payload in zip(rows, alert_payloads(rows), strict=True):
            event = {"type": "alert.created", "alert": dict(payload)}
            messages.append((ALL_GROUP, event))
            if row.customer_owner_id is not None:
                messages.append((user_group(row.customer_owner_id), event))
    _group_send_many(messages)


def close_user_sockets(user_id: int, *, reason: str = "signed_out") -> None:
    """Tell every live-feed socket of this user to close (they signed out). Never raises: signing
    out must work even when the channel layer is down."""
    try:
        _group_send_many([(user_group(int(user_id)), {"type": "session.ended", "reason": reason})])
    except Exception:
        logger.exception("could not tell user %s's alert sockets to close", user_id)


def on_user_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """`user_logged_out` receiver: signing out of the admin closes the bell's socket too."""
    if user is not None and user.pk is not None:
        close_user_sockets(user.pk)


def _group_send_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None or not messages:
        return

    async def send_all() -> None:
        for group, event in messages:
            await layer.group_send(group, event)

    if isinstance(layer, RedisPubSubChannelLayer):
        # The pub/sub layer keeps one connection per event loop; async_to_sync in a plain thread
        # (a worker, a command) would make a new loop, and so a new connection, per call.
        asyncio.run_coroutine_threadsafe(send_all(), _publisher_loop()).result(timeout=30)
    else:
        async_to_sync(send_all)()  # in-memory: must run on the loop that owns the queues


_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
_publisher_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process (re-created after a fork) for publishing."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="alerts-publisher", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


# --- Tickets: a short-lived, single-use credential for the WebSocket URL -----------------------


def _ticket_key(ticket: str) -> str:
    # Only a hash is stored, so the cache never holds a usable credential.
    return _TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


def ws_ticket_issue(*, user_id: int, session_expires_at: dt.datetime) -> tuple[str, int]:
    """A ticket for `ws/alerts?ticket=…`: valid TICKET_SECONDS, once; the socket it opens lives
    no longer than the sign-in (access token) that asked for it."""
    ticket = secrets.token_urlsafe(32)
    expires_at = timezone.now() + dt.timedelta(seconds=TICKET_SECONDS)
    claim = {
        "user_id": user_id,
        "expires_at": expires_at.timestamp(),
        "session_expires_at": session_expires_at.timestamp(),
    }
    try:
        cache.set(_ticket_key(ticket), claim, timeout=TICKET_SECONDS)
    except (RedisError, OSError) as exc:
        # The feed itself runs over Redis (the channel layer): without it a ticket opens nothing.
        raise ServiceUnavailableError("The live alert feed is unavailable right now. Try again shortly.") from exc
    return ticket, TICKET_SECONDS


async def ws_ticket_consume(ticket: str) -> tuple[int, dt.datetime] | None:
    """(user id, session expiry) for a valid ticket, deleting it; None if unknown, used or expired."""
    if not ticket or len(ticket) > 200:
        return None
    key = _ticket_key(ticket)
    try:
        data = await cache.aget(key)
        # Whoever deletes the key owns the ticket: two sockets racing with one ticket cannot both win.
        if data is None or not await cache.adelete(key):
            return None
    except (RedisError, OSError):
        logger.warning("ticket store unreachable; refusing the ticket")
        return None
    if data["expires_at"] <= timezone.now().timestamp():
        return None
    return data["user_id"], dt.datetime.fromtimestamp(data["session_expires_at"], tz=dt.UTC)


# --- Backlog for the resume protocol -------------------------------------------------------------


def alert_backlog(*, user: Any, after_id: int | None) -> tuple[list[dict[str, Any]], bool]:
    """What a (re)connecting client missed, in id order, scoped to what the user may see.

    Returns (alerts, truncated): truncated means more than BACKLOG_LIMIT alerts follow `after_id`;
    the client resumes again from the last id it received.
    """
    scope = alert_scope(user=user)
    if after_id is None:
        recent = list(scope.filter(read=False).order_by("-pk")[:RECENT_LIMIT])
        return alert_payloads(reversed(recent)), False
    after = list(scope.filter(pk__gt=after_id).order_by("pk")[: BACKLOG_LIMIT + 1])
    truncated = len(after) > BACKLOG_LIMIT
    # The late committers are just below the client's last id: the nearest ones, oldest first.
    recent = scope.filter(Q(pk__lte=after_id) & Q(created_at__gte=timezone.now() - LATE_COMMIT_WINDOW))
    late = list(recent.order_by("-pk")[:LATE_COMMIT_LIMIT])[::-1]
    return alert_payloads(late + after[:BACKLOG_LIMIT]), truncated
