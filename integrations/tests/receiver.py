"""Deliveries through the webhook receiver in-process: `churnshield.asgi.application` over ASGI.

One event loop for the whole test session, on a thread of its own, as a server process runs one:
the receiver's per-loop group committer and config cache live as long as in production, and
background work (the committer releasing its connection) runs between requests. The receiver
stores on its own threads and connections, so tests that deliver need committed rows:
`pytest.mark.django_db(transaction=True)`.

Headers are given as Django's test client takes them (`HTTP_STRIPE_SIGNATURE=...`, as the
signing helpers in `fakes.py` return them) and sent on the wire as a server decodes them.
"""

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from channels.testing import HttpCommunicator
from django.core.cache import cache

# Imported with the test module, not on the first delivery: its django.setup() reconfigures
# logging, which would drop the handlers pytest (caplog) installed for a running test.
from churnshield.asgi import application
from integrations.models import Integration
from integrations.services import drain_key

HOST = "testserver"  # the host HubSpot's signed URI names in the tests

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes
    headers: dict[bytes, bytes]

    def json(self) -> Any:
        return json.loads(self.content)


def _receiver_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="webhook-receiver-loop", daemon=True).start()
        return _loop


def _wire(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    wire = [(b"host", HOST.encode()), (b"content-type", b"application/json")]
    for key, value in (headers or {}).items():
        wire.append((key.removeprefix("HTTP_").lower().replace("_", "-").encode(), value.encode("latin-1")))
    return wire


async def _exchange(method: str, path: str, body: bytes, headers: dict[str, str] | None) -> Answer:
    communicator = HttpCommunicator(application, method, path, body=body, headers=_wire(headers))
    response = await communicator.get_response(timeout=30)
    return Answer(response["status"], response["body"], dict(response["headers"]))


def post(path: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST") -> Answer:
    return asyncio.run_coroutine_threadsafe(_exchange(method, path, body, headers), _receiver_loop()).result(60)


def deliver(integration: Integration, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    return post(f"/api/webhooks/{integration.provider}/{integration.pk}", body, headers)


def deliver_many(integration: Integration, deliveries: list[tuple[bytes, dict[str, str]]]) -> list[Answer]:
    """Concurrent deliveries (they share the receiver's commits), answered in the given order."""
    path = f"/api/webhooks/{integration.provider}/{integration.pk}"

    async def all_of() -> list[Answer]:
        return list(await asyncio.gather(*(_exchange("POST", path, body, headers) for body, headers in deliveries)))

    return asyncio.run_coroutine_threadsafe(all_of(), _receiver_loop()).result(120)


def hold_drain(integration: Integration) -> None:
    """As when a drain of the integration is already scheduled (its debounce window is open):
    deliveries are stored and answered, and wait for the next drain, as they wait for a worker.

    Without it, in-process tasks (tests, the embedded topology) drain before the answer. The
    next `services.webhooks_drain` closes the window, as the real drain does.
    """
    cache.set(drain_key(integration.pk), 1, timeout=3600)
