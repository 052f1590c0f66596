"""An ASGI guard in front of Django that bounds request bodies before anything reads them.

Django's ASGI handler reads the whole body (spooling to disk past 2.5 MB) before the first
middleware runs, and DRF treats a body without `Content-Length` (chunked transfer) as empty — a
chunked JSON body was silently parsed as `{}`. Here a declared `Content-Length` above
`DATA_UPLOAD_MAX_MEMORY_SIZE` is answered 413 without reading the body; a chunked body is read
up to that limit (413 beyond it) and handed to Django with its `Content-Length`, so it parses like
any other body. WebSocket and lifespan scopes pass through untouched.

History uploads (`POST /api/imports`, the admin's import page) may be larger, up to
`IMPORT_MAX_UPLOAD_BYTES` (Django spools them to disk, never to memory); they must declare their
`Content-Length` (411 otherwise), as browsers, curl and HTTP libraries do for files.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from django.conf import settings

from core.exceptions import error_body

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# Paths that take history files (POST only), and the field the files are sent in.
UPLOAD_PATHS = {"/api/imports": "files", "/admin/customers/importjob/add/": "files"}
_MULTIPART_SLACK = 1 << 20  # the multipart framing and the option fields around the files


async def _error(send: Send, status: int, message: str, code: str, field: str | None = None) -> None:
    body = orjson.dumps(error_body(message, code, {field: [message]} if field else None))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BoundedBody:
    """Wraps an ASGI HTTP app: bodies over `DATA_UPLOAD_MAX_MEMORY_SIZE` get the API's 413."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        too_large = f"Request body is larger than {limit} bytes."
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        field = UPLOAD_PATHS.get(scope.get("path", "")) if scope.get("method") == "POST" else None
        if field is not None:
            limit = settings.IMPORT_MAX_UPLOAD_BYTES + _MULTIPART_SLACK
            if declared is None:
                message = "An upload of files must declare its Content-Length."
                await _error(send, 411, message, "length_required", field)
            elif not declared.isdigit():
                await _error(send, 400, "Content-Length must be a number of bytes.", "invalid_content_length")
            elif int(declared) > limit:
                message = (
                    f"The upload is {int(declared):,} bytes; at most {settings.IMPORT_MAX_UPLOAD_BYTES:,} are accepted."
                )
                await _error(send, 413, message, "payload_too_large", field)
            else:
                await self.app(scope, receive, send)
            return
        if declared is not None:
            if not declared.isdigit():
                await _error(send, 400, "Content-Length must be a number of bytes.", "invalid_content_length")
            elif int(declared) > limit:
                await _error(send, 413, too_large, "payload_too_large")
            else:
                await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _error(send, 413, too_large, "payload_too_large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = [*scope["headers"], (b"content-length", str(len(body)).encode())]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect, as Django does
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)
