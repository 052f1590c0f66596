"""The webhook receiver on the ASGI server: async, outside Django's (partly sync) middleware.

Each delivery is verified on the event loop (CPU only; the integration's config is cached for a
few seconds), then handed to a per-process group committer: the events of all deliveries that
arrive while the previous commit is in flight are inserted in one transaction by one dedicated
thread, and each request is answered once its rows are durable. A commit costs the same for one
row or hundreds, so throughput follows the arrival rate instead of the disk's fsync rate.

The DRF view (`integrations.api.views.WebhookView`) serves the same route under WSGI and in tests,
through the same services (`webhook_integration`, `webhook_verify`, `webhook_store`).
"""

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.db import connection

from churnshield.exceptions import NotFoundError
from integrations import services
from integrations.connectors.base import Delivery, SignatureError
from integrations.models import Integration, WebhookEvent

logger = logging.getLogger(__name__)
CONFIG_TTL_SECONDS = 5.0  # a rotated secret reaches every process within this


class GroupCommitter:
    """Stores rows from many concurrent requests in as few transactions as possible."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-store")
        self.pending: list[tuple[list[WebhookEvent], asyncio.Future]] = []
        self.flusher: asyncio.Task | None = None

    async def store(self, rows: list[WebhookEvent]) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((rows, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            batch, self.pending = self.pending, []
            rows = [row for rows, _ in batch for row in rows]
            try:
                await loop.run_in_executor(self.executor, _store, rows)
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


def _store(rows: list[WebhookEvent]) -> None:
    try:
        services.webhook_store(rows=rows)
    finally:
        # Back to the pool (PostgreSQL) after every batch: a broken connection is not reused, and
        # the thread holds none while idle.
        connection.close()


_committers: dict[int, GroupCommitter] = {}
_configs: dict[int, tuple[float, Integration | None]] = {}


def _committer() -> GroupCommitter:
    loop = asyncio.get_running_loop()
    return _committers.setdefault(id(loop), GroupCommitter())


def _load_integration(integration_id: int) -> Integration | None:
    try:
        return Integration.objects.only("id", "config").filter(pk=integration_id).first()
    finally:
        connection.close()  # this thread is the loop's default executor: return the connection


async def _integration(provider: str, integration_id: int) -> Integration:
    cached = _configs.get(integration_id)
    if cached is None or time.monotonic() - cached[0] > CONFIG_TTL_SECONDS:
        integration = await asyncio.get_running_loop().run_in_executor(None, _load_integration, integration_id)
        cached = (time.monotonic(), integration)
        _configs[integration_id] = cached
    integration = cached[1]
    if integration is None or integration.provider != provider:
        raise NotFoundError("Integration not found")
    return integration


def _error(status: int, message: str, code: str) -> tuple[int, bytes]:
    return status, json.dumps({"message": message, "code": code, "errors": {}}).encode()


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
        await self.send_response(status, payload, headers=headers)

    async def receive_delivery(self, body: bytes) -> tuple[int, bytes]:
        if self.scope["method"] != "POST":
            return _error(405, "Method not allowed.", "method_not_allowed")
        if self.size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return _error(413, "Request body is too large.", "payload_too_large")
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            integration = await _integration(kwargs["provider"], int(kwargs["integration_id"]))
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope["headers"]}
            rows = services.webhook_verify(
                integration=integration,
                delivery=Delivery(body=body, headers=headers, method="POST", url=_url(self.scope, headers)),
            )
        except NotFoundError as error:
            return _error(404, str(error), "not_found")
        except SignatureError as error:
            return _error(400 if error.code == "invalid_payload" else 401, str(error), error.code)
        try:
            await _committer().store(rows)
        except Exception:
            logger.exception("could not store webhook events of integration %s", integration.pk)
            # The provider retries a 5xx; nothing was acknowledged.
            return _error(503, "The event could not be stored; retry later.", "unavailable")
        return 200, json.dumps({"received": len(rows)}).encode()


def _url(scope: dict[str, Any], headers: dict[str, str]) -> str:
    """The URL the provider signed (HubSpot signs it); `config.webhook_url` overrides it behind proxies."""
    host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("localhost", 80))
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{scope['path']}" + (f"?{query}" if query else "")
