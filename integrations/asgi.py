"""The webhook receiver on the ASGI server: async, outside Django's (partly sync) middleware.

Each delivery is verified on the event loop (CPU only; the integration's config is cached for a
few seconds), then handed to a per-process group committer: the events of all deliveries that
arrive while the previous commit is in flight are inserted in one transaction by one dedicated
thread, and each request is answered once its rows are durable. A commit costs the same for one
row or hundreds, so throughput follows the arrival rate instead of the disk's fsync rate.

This is the only webhook receiver: the route is not in Django's URL conf (there is no WSGI entry
point; `WSGI_APPLICATION = None`), and `integrations.api.schema` documents it in the OpenAPI schema.
Tests drive it in-process over ASGI (`integrations/tests/receiver.py`).
"""

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from core.exceptions import NotFoundError, error_body
from integrations import services
from integrations.connectors.base import Delivery, SignatureError
from integrations.models import Integration, WebhookEvent

logger = logging.getLogger(__name__)
# A rotated secret reaches every process about this long after the change (the config is
# re-read in the background once older), and a cached config older than the second figure is
# never used (the delivery waits for the database instead).
CONFIG_TTL_SECONDS = 5.0
CONFIG_MAX_STALE_SECONDS = 60.0


class GroupCommitter:
    """Stores rows from many concurrent requests in as few statements as possible.

    Up to WEBHOOK_STORE_CONCURRENCY flushes run at once, each on a thread of its own: a delivery
    waits for the statement that carries its rows, not also for the ones before it. A flusher
    keeps its connection while work keeps coming (the pool's health check is one more round trip
    per checkout: on a slow network a third of the answer time) and returns it when idle; a
    kept connection that died meanwhile costs one retry on a checked one, never an error. The
    drains are enqueued by another thread afterwards (with a broker; in-process tasks run before
    the answer, as before), so a slow or unreachable broker never holds a delivery's answer; the
    stored rows are the outbox either way.
    """

    def __init__(self) -> None:
        limit = max(1, settings.WEBHOOK_STORE_CONCURRENCY)
        self.idle = [ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-store") for _ in range(limit)]
        self.enqueuer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-enqueue")
        self.pending: list[tuple[list[WebhookEvent], asyncio.Future]] = []
        self.enqueuing: set[int] = set()  # integrations with an enqueue waiting: one is enough

    async def store(self, rows: list[WebhookEvent]) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((rows, future))
        if self.idle:
            _background(self._flush(self.idle.pop()))
        await future

    async def _flush(self, thread: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                rows = [row for rows, _ in batch for row in rows]
                try:
                    integration_ids = await loop.run_in_executor(thread, _store, rows)
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
                    if settings.CELERY_TASK_ALWAYS_EAGER:
                        continue  # in-process tasks (embedded, tests): the drain already ran in _store
                    for integration_id in integration_ids - self.enqueuing:
                        self.enqueuing.add(integration_id)
                        loop.run_in_executor(self.enqueuer, self._enqueue, integration_id)
        finally:
            # Idle: the connection goes back to the pool (no round trip). Submitted, not awaited:
            # the thread runs its work in order, so the release still comes before its next
            # store, and it happens even when this task is cancelled (a loop shutting down).
            thread.submit(_release)
            self.idle.append(thread)

    def _enqueue(self, integration_id: int) -> None:
        self.enqueuing.discard(integration_id)  # an event stored from now on asks again
        try:
            services.enqueue_drain(integration_id=integration_id)
        finally:
            connection.close()  # eager mode (tests, embedded) drains right here, on this thread


def _release() -> None:
    connection.close()  # resolved on the calling thread: each thread has its own connection


def _store(rows: list[WebhookEvent]) -> set[int]:
    # With in-process tasks the drain runs here, before the answer, as a worker would run it.
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    try:
        try:
            return services.webhook_store(rows=rows, enqueue=eager)
        except (OperationalError, InterfaceError):
            # The connection kept from the last flush may have died meanwhile (a restart, a
            # terminated backend): once more on a fresh, checked one. The insert is idempotent.
            connection.close()
            return services.webhook_store(rows=rows, enqueue=eager)
    except BaseException:
        connection.close()  # a broken connection is not kept (the pool discards it)
        raise


_committers: dict[int, GroupCommitter] = {}
_tasks: set[asyncio.Task] = set()


def _background(coroutine: Any) -> None:
    """Run without awaiting; the loop keeps only weak references to tasks, so keep one here."""
    task = asyncio.create_task(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


_configs: dict[int, tuple[float, Integration | None]] = {}
_loading: dict[int, asyncio.Future] = {}


def _committer() -> GroupCommitter:
    loop = asyncio.get_running_loop()
    return _committers.setdefault(id(loop), GroupCommitter())


def _load_integration(integration_id: int) -> Integration | None:
    try:
        return Integration.objects.only("id", "config").filter(pk=integration_id).first()
    finally:
        connection.close()  # this thread is the loop's default executor: return the connection


async def _reload(integration_id: int) -> Integration | None:
    """One load per integration at a time, however many deliveries ask for it."""
    future = _loading.get(integration_id)
    if future is None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, _load_integration, integration_id)
        _loading[integration_id] = future

        def loaded(done: asyncio.Future) -> None:
            _loading.pop(integration_id, None)
            if not done.cancelled() and done.exception() is None:
                _configs[integration_id] = (time.monotonic(), done.result())

        future.add_done_callback(loaded)
    return await asyncio.shield(future)


async def _integration(provider: str, integration_id: int) -> Integration:
    cached = _configs.get(integration_id)
    age = time.monotonic() - cached[0] if cached else None
    if age is None or age > CONFIG_MAX_STALE_SECONDS:
        integration = await _reload(integration_id)
    else:
        integration = cached[1]
        if age > CONFIG_TTL_SECONDS and integration_id not in _loading:
            # Refresh in the background: the delivery does not wait for the database round trips.
            _background(_reload(integration_id))
    if integration is None or integration.provider != provider:
        raise NotFoundError("Integration not found")
    return integration


def _error(status: int, message: str, code: str) -> tuple[int, bytes]:
    return status, json.dumps(error_body(message, code)).encode()


# Routed in churnshield/asgi.py, ahead of Django's URL conf (which therefore cannot reverse it).
WEBHOOK_ROUTE = "api/webhooks/<str:provider>/<int:integration_id>"


def webhook_path(*, provider: str, integration_id: int) -> str:
    """The path a provider posts one integration's webhooks to."""
    return f"/api/webhooks/{provider}/{integration_id}"


class WebhookConsumer(AsyncHttpConsumer):
    """`POST /api/webhooks/<provider>/<integration id>` on the ASGI server."""

    # No channel layer: a webhook never receives group messages, and joining the layer would cost
    # a Redis round trip per request.
    channel_layer_alias = "__none__"

    async def http_request(self, message: dict) -> None:
        # Bound the body like Django does (DATA_UPLOAD_MAX_MEMORY_SIZE) before holding it all.
        self.size = getattr(self, "size", 0) + len(message.get("body", b""))
        if self.size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            self.body = []
            message = {"body": b"", "more_body": False, "too_large": True}
        await super().http_request(message)

    async def handle(self, body: bytes) -> None:
        status, payload = await self.receive_delivery(body)
        headers = [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(payload)).encode())]
        if status == 405:
            headers.append((b"Allow", b"POST"))  # HTTP requires it on a 405, as Django's views send it
        await self.send_response(status, payload, headers=headers)

    async def _receive(self, body: bytes) -> tuple[int, bytes]:
        if self.scope["method"] != "POST":
            return _error(405, "Method not allowed.", "method_not_allowed")
        if self.size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return _error(413, "Request body is too large.", "payload_too_large")
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            integration = await _integration(kwargs["provider"], int(kwargs["integration_id"]))
        except NotFoundError as error:
            return _error(404, str(error), "not_found")
        except Exception:
            logger.exception("could not load integration %s", kwargs["integration_id"])
            return _error(503, "The integration could not be loaded; retry later.", "unavailable")
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope["headers"]}
            rows = services.webhook_verify(
                integration=integration,
                delivery=Delivery(body=body, headers=headers, method="POST", url=_url(self.scope, headers)),
            )
        except SignatureError as error:
            return _error(400 if error.code == "invalid_payload" else 401, str(error), error.code)
        try:
            await _committer().store(rows)
        except Exception:
            logger.exception("could not store webhook events of integration %s", integration.pk)
            # The provider retries a 5xx; nothing was acknowledged.
            return _error(503, "The event could not be stored; retry later.", "unavailable")
        return 200, json.dumps({"received": len(rows)}).encode()

    async def receive_delivery(self, body: bytes) -> tuple[int, bytes]:
        """Answer within WEBHOOK_RECEIVE_TIMEOUT_SECONDS whatever the database or network does:
        a stalled store is answered 503 (the provider retries; its rows, if they commit after
        all, make the retry a duplicate), never left to run into the provider's own timeout."""
        try:
            return await asyncio.wait_for(self._receive(body), settings.WEBHOOK_RECEIVE_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning("webhook delivery not stored within %ss", settings.WEBHOOK_RECEIVE_TIMEOUT_SECONDS)
            return _error(503, "The event could not be stored in time; retry later.", "unavailable")


def _url(scope: dict[str, Any], headers: dict[str, str]) -> str:
    """The URL the provider signed (HubSpot signs it); `config.webhook_url` overrides it behind proxies."""
    host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("localhost", 80))
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{scope['path']}" + (f"?{query}" if query else "")
