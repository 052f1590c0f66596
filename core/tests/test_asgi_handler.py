"""The ASGI handler runs the middleware chain and the view as one sync call (core/handler.py):
every middleware still applies, async views still answer, and a request crosses between the event
loop and a thread a fixed few times instead of once per middleware hook."""

import asyncio
import json

import pytest
from asgiref.sync import SyncToAsync
from channels.testing import HttpCommunicator

from churnshield.asgi import application, django_asgi_app
from core.auth.tokens import issue_tokens

pytestmark = pytest.mark.django_db(transaction=True)


def get(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"testserver"), *(headers or [])])
    return asyncio.run(communicator.get_response(timeout=10))


@pytest.fixture
def hops(monkeypatch) -> list[object]:
    """Every sync_to_async call made while serving (request_started, the chain, request_finished…)."""
    calls: list[object] = []
    original = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        calls.append(self.func)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return calls


def test_the_chain_is_one_sync_call_with_every_middleware_applied(manager, hops):
    assert not asyncio.iscoroutinefunction(django_asgi_app._middleware_chain)
    token = issue_tokens(manager)["access"]
    response = get("/api/customers?per_page=1", [(b"authorization", f"Bearer {token}".encode())])
    assert response["status"] == 200
    headers = {name.lower(): value for name, value in response["headers"]}
    assert headers[b"x-request-id"]  # RequestIdMiddleware
    assert headers[b"x-content-type-options"] == b"nosniff"  # SecurityMiddleware
    assert headers[b"x-total-count"] == b"0"
    # Django's own async chain made about twenty hops here (two per MiddlewareMixin middleware).
    assert len(hops) <= 4, hops


def test_async_views_and_the_json_404_still_answer(hops):
    assert get("/healthz")["status"] == 200
    ready = get("/readyz")  # an async view, adapted inside the sync chain
    assert ready["status"] in (200, 503) and "checks" in json.loads(ready["body"])
    missing = get("/api/no-such-endpoint")
    assert missing["status"] == 404 and json.loads(missing["body"])["code"]
