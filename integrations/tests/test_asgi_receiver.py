"""The receiver's group commit in-process: concurrent deliveries share commits without losing or
duplicating any, and the store threads give their connections back. (Its answers per provider:
test_webhooks.py, test_clock_skew.py, test_webhook_fuzz.py.)"""

import asyncio
import hashlib
import hmac
import json

import pytest
from channels.testing import HttpCommunicator
from django.db import connection

from churnshield.asgi import application
from integrations import asgi as receiver
from integrations.models import Integration, WebhookEvent
from integrations.tests.conftest import SEGMENT_SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def signed(n: int, secret: str = SEGMENT_SECRET) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = json.dumps({"messageId": f"asgi-{n}", "type": "track", "event": "X", "userId": "u"}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest().encode()
    return body, [(b"content-type", b"application/json"), (b"x-signature", signature), (b"host", b"testserver")]


async def deliver(path: str, body: bytes, headers: list, method: str = "POST") -> dict:
    communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
    return await communicator.get_response(timeout=10)


def test_concurrent_deliveries_and_duplicates_are_stored_once_each(make_integration):
    integration = make_integration("segment")
    path = f"/api/webhooks/segment/{integration.pk}"

    async def run() -> list[dict]:
        deliveries = [signed(n % 40) for n in range(60)]  # 20 repeats among 60
        return await asyncio.gather(*(deliver(path, body, headers) for body, headers in deliveries))

    responses = asyncio.run(run())
    assert [r["status"] for r in responses] == [200] * 60
    assert json.loads(responses[0]["body"]) == {"received": 1}
    assert sorted(WebhookEvent.objects.values_list("event_id", flat=True)) == sorted(f"asgi-{n}" for n in range(40))


def test_store_threads_return_their_connections_when_the_loop_ends(make_integration):
    """asyncio.run cancels the flush still running after the answer; its thread must not keep a
    connection (a held one is never back in the pool and keeps a backend until the process ends)."""
    integration = make_integration("segment")
    assert asyncio.run(deliver(f"/api/webhooks/segment/{integration.pk}", *signed(1)))["status"] == 200
    store_threads = [thread for committer in receiver._committers.values() for thread in committer.idle]
    assert store_threads
    assert [thread.submit(lambda: connection.connection is None).result() for thread in store_threads] == [True] * len(
        store_threads
    )


def test_rejections_write_nothing_and_use_the_error_shape(make_integration):
    integration = make_integration("segment")
    path = f"/api/webhooks/segment/{integration.pk}"
    body, headers = signed(1, secret="wrong")
    bad = asyncio.run(deliver(path, body, headers))
    assert bad["status"] == 401
    assert json.loads(bad["body"])["code"] == "invalid_signature"
    assert asyncio.run(deliver(f"/api/webhooks/stripe/{integration.pk}", *signed(1)))["status"] == 404
    assert asyncio.run(deliver("/api/webhooks/segment/999999", *signed(1)))["status"] == 404
    wrong_method = asyncio.run(deliver(path, b"", [], method="GET"))
    assert (wrong_method["status"], dict(wrong_method["headers"])[b"Allow"]) == (405, b"POST")
    assert WebhookEvent.objects.count() == 0


def test_oversized_body_is_413(make_integration, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    integration = make_integration("segment")
    body = json.dumps({"messageId": "big", "pad": "x" * 200}).encode()
    headers = [(b"x-signature", hmac.new(SEGMENT_SECRET.encode(), body, hashlib.sha1).hexdigest().encode())]
    response = asyncio.run(deliver(f"/api/webhooks/segment/{integration.pk}", body, headers))
    assert response["status"] == 413
    assert not Integration.objects.get(pk=integration.pk).webhook_events.exists()


def test_signed_unreadable_bodies_are_400_and_nul_ids_are_stored(make_integration):
    """F2 findings: a signed body we cannot read is 400 and writes nothing; a NUL in an id is kept, escaped."""
    integration = make_integration("segment")
    path = f"/api/webhooks/segment/{integration.pk}"

    def headers(body: bytes) -> list:
        return [(b"x-signature", hmac.new(SEGMENT_SECRET.encode(), body, hashlib.sha1).hexdigest().encode())]

    for body in (b"[" * 2000 + b"]" * 2000, '{"messageId": "u16", "type": "x"}'.encode("utf-16")):
        response = asyncio.run(deliver(path, body, headers(body)))
        assert response["status"] == 400
        assert json.loads(response["body"])["code"] == "invalid_payload"
    assert WebhookEvent.objects.count() == 0
    body = json.dumps({"messageId": "nul\x00id", "type": "track", "event": "X", "userId": "u"}).encode()
    assert asyncio.run(deliver(path, body, headers(body)))["status"] == 200
    assert list(WebhookEvent.objects.values_list("event_id", flat=True)) == ["nul\\u0000id"]
