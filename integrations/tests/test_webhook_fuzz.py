"""Webhook payload fuzzing (RELIABILITY F2) with Hypothesis, through the receiver over ASGI.

Every generated body is posted twice: signed the provider's way over the exact bytes, and signed
with a wrong secret. The stated rule for a delivery whose signature verifies:

- not a usable envelope (not JSON, not UTF-8, too deep, not the provider's shape, no event id)
  → 400 `invalid_payload`, nothing stored (a retry of the same bytes gets the same answer);
- an envelope with an id → 200 and stored raw; the drain then applies it, ignores it (unknown
  type) or dead-letters it (unusable contents). The one event left retrying is one that names a
  customer we do not have yet (it may arrive out of order; WEBHOOK_MAX_ATTEMPTS bounds the wait).

Standard Webhooks (generic) signs text, so a body that is not UTF-8 cannot carry a valid
signature there: 401 for it is the right answer.

Examples: FUZZ_EXAMPLES per provider (100 in CI, derandomized; raise it for a nightly run).

Never a 5xx; a wrong signature → 401 and nothing written; an oversize body → 413 before parsing.
"""

import base64
import hashlib
import hmac
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from integrations import services
from integrations.models import ExternalRecord, WebhookEvent
from integrations.tests.conftest import GENERIC_SECRET, HUBSPOT_SECRET, SEGMENT_SECRET, STRIPE_SECRET, ZENDESK_SECRET
from integrations.tests.fakes import hubspot_headers, segment_headers, stripe_header, zendesk_headers
from integrations.tests.receiver import hold_drain, post

pytestmark = pytest.mark.django_db(transaction=True)  # the receiver commits on its own threads
PROVIDERS = ["stripe", "hubspot", "zendesk", "segment", "generic"]
WRONG = {"generic": "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="}  # a well-formed secret that is not ours
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(["", "a\x00b", "\x00", "é"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
ids = text | st.integers(-(2**70), 2**70) | st.none() | st.floats(allow_nan=False)
SHAPES = {
    "stripe": st.fixed_dictionaries(
        {"id": ids, "type": text | st.sampled_from(["customer.created", "invoice.payment_failed"])},
        optional={"object": st.just("event"), "data": st.fixed_dictionaries({"object": json_values})},
    ),
    "hubspot": st.lists(
        st.fixed_dictionaries(
            {"eventId": ids, "subscriptionType": text | st.just("company.propertyChange")},
            optional={"objectId": ids, "propertyName": text, "propertyValue": json_values},
        ),
        max_size=3,
    ),
    "zendesk": st.fixed_dictionaries(
        {"id": ids, "type": text | st.just("zen:event-type:ticket.created")}, optional={"detail": json_values}
    ),
    "segment": st.fixed_dictionaries(
        {"messageId": ids, "type": text | st.sampled_from(["track", "identify"])},
        optional={"userId": ids, "event": text, "traits": json_values, "properties": json_values},
    ),
    "generic": st.fixed_dictionaries({"type": text}, optional={"data": json_values}),
}
NASTY = [
    b"[" * 2000 + b"]" * 2000,  # deeper than Python's recursion limit
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b'{"id": 1e999, "messageId": 1e999, "type": "x"}',
    b'{"id": "a", "id": "b", "messageId": "m", "messageId": "n", "type": "x"}',
    b'{"id": "nul\\u0000id", "messageId": "nul\\u0000id", "type": "t\\u0000", "data": {"k\\u0000": "v\\u0000"}}',
    b'{"id": "\xff\xfe", "messageId": "\xc3\x28", "type": "x"}',  # invalid UTF-8 inside strings
    '{"id": "utf16", "messageId": "utf16", "type": "x"}'.encode("utf-16"),
    '{"id": "utf32", "messageId": "utf32", "type": "x"}'.encode("utf-32-le"),
    b"\x00" * 20,
    b"null",
    b"[]",
    b'"just a string"',
]


def bodies(provider: str) -> st.SearchStrategy[bytes]:
    shaped = SHAPES[provider].map(lambda value: json.dumps(value).encode())
    shaped_ascii = SHAPES[provider].map(
        lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    return st.one_of(shaped, shaped_ascii, st.binary(max_size=200), st.sampled_from(NASTY))


def sign(provider: str, integration_id: int, body: bytes, secret: str, msg_id: str) -> dict:
    """The provider's signature headers over the exact bytes, timestamped now."""
    now = int(time.time())
    if provider == "stripe":  # Stripe signs text; a body that is not UTF-8 is signed as it decodes
        return {"HTTP_STRIPE_SIGNATURE": stripe_header(body.decode("utf-8", "replace"), secret, now)}
    if provider == "hubspot":
        uri = f"http://testserver/api/webhooks/hubspot/{integration_id}"
        return hubspot_headers(secret, "POST", uri, body, now * 1000)
    if provider == "zendesk":
        return zendesk_headers(secret, body, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    if provider == "segment":
        return segment_headers(secret, body)
    # Standard Webhooks over bytes (the library's signer takes text only).
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = base64.b64encode(hmac.digest(key, f"{msg_id}.{now}.".encode() + body, hashlib.sha256)).decode()
    return {"HTTP_WEBHOOK_ID": msg_id, "HTTP_WEBHOOK_TIMESTAMP": str(now), "HTTP_WEBHOOK_SIGNATURE": f"v1,{mac}"}


def is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


SECRETS = {
    "stripe": STRIPE_SECRET,
    "hubspot": HUBSPOT_SECRET,
    "zendesk": ZENDESK_SECRET,
    "segment": SEGMENT_SECRET,
    "generic": GENERIC_SECRET,
}


def state() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (WebhookEvent, Customer, ExternalRecord, BillingEvent, SupportTicket, NpsResponse, UserSession)
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fuzzed_bodies_never_break_the_receiver(make_integration, provider):
    integration = make_integration(provider)
    url = f"/api/webhooks/{provider}/{integration.pk}"
    seen = {"stored": 0, "refused": 0}

    @FUZZ
    @given(body=bodies(provider), msg_id=st.text(alphabet="abcdef0123456789", min_size=1, max_size=12))
    def deliver(body: bytes, msg_id: str) -> None:
        before = state()
        hold_drain(integration)  # applied below by the test's drain, as a worker would
        wrong = sign(provider, integration.pk, body, WRONG.get(provider, "not-the-secret"), msg_id)
        response = post(url, body, wrong)
        assert response.status_code == 401, (body, response.content)
        assert response.json()["code"] in {"invalid_signature", "clock_skew"}
        assert state() == before

        response = post(url, body, sign(provider, integration.pk, body, SECRETS[provider], msg_id))
        if provider == "generic" and response.status_code == 401 and not is_utf8(body):
            return
        assert response.status_code in (200, 400), (body, response.status_code, response.content)
        if response.status_code == 400:
            assert response.json()["code"] == "invalid_payload", response.content
            assert state() == before
            seen["refused"] += 1
            return
        seen["stored"] += 1
        services.webhooks_drain(integration_id=integration.pk)
        pending = WebhookEvent.objects.filter(integration=integration).exclude(status__in=["processed", "dead"])
        pending = pending.exclude(status="retrying", last_error__startswith="UnresolvedCustomer:")
        assert list(pending.values_list("event_id", "status", "last_error")) == []

    deliver()
    # The strategies reach both sides of the rule.
    assert seen["stored"] > 0 and seen["refused"] > 0, seen


def test_an_oversize_body_is_413_before_parsing(make_integration, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 3 * 1024 * 1024
    body = b'{"id": "big", "messageId": "big", "type": "x", "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    for provider in PROVIDERS:
        integration = make_integration(provider)
        headers = sign(provider, integration.pk, body, SECRETS[provider], "big")
        response = post(f"/api/webhooks/{provider}/{integration.pk}", body, headers)
        assert response.status_code == 413, provider
        assert response.json()["code"] == "payload_too_large", provider
    assert WebhookEvent.objects.count() == 0


# --- What the fuzzing found (each failed before its fix) ----------------------------------------


UNREADABLE = [
    ("zendesk", '{"id": "z1", "type": "x"}'.encode("utf-16")),  # json sniffed UTF-16, decode() → 500
    ("segment", b"[" * 2000 + b"]" * 2000),  # RecursionError → 500
    ("stripe", b""),  # was 401, as if the signature were bad
]


def test_signed_but_unreadable_bodies_are_400_invalid_payload(make_integration):
    for provider, body in UNREADABLE:
        integration = make_integration(provider)
        headers = sign(provider, integration.pk, body, SECRETS[provider], "m1")
        response = post(f"/api/webhooks/{provider}/{integration.pk}", body, headers)
        assert response.status_code == 400, provider
        assert response.json()["code"] == "invalid_payload", provider
    assert WebhookEvent.objects.count() == 0


def test_nul_in_ids_and_values_is_stored_and_applied_without_it(make_integration):
    integration = make_integration("stripe")
    customer = {"id": "cus_nul", "object": "customer", "email": "a@example.com", "name": "A\x00cme", "created": 1}
    body = json.dumps(
        {"id": "evt\x001", "type": "customer.created", "created": 2, "data": {"object": customer}}
    ).encode()
    headers = sign("stripe", integration.pk, body, STRIPE_SECRET, "")
    hold_drain(integration)
    response = post(f"/api/webhooks/stripe/{integration.pk}", body, headers)
    assert response.status_code == 200, response.content  # was a 500: PostgreSQL text cannot hold NUL
    assert WebhookEvent.objects.get().event_id == "evt\\u00001"
    services.webhooks_drain(integration_id=integration.pk)
    event = WebhookEvent.objects.get()
    assert (event.status, event.last_error) == ("processed", "")
    assert Customer.objects.get().name == "Acme"


def test_an_event_of_the_wrong_shape_is_dead_at_once(make_integration):
    integration = make_integration("stripe")
    body = json.dumps({"id": "evt_shape", "type": "customer.created", "data": "not an object"}).encode()
    headers = sign("stripe", integration.pk, body, STRIPE_SECRET, "")
    hold_drain(integration)
    assert post(f"/api/webhooks/stripe/{integration.pk}", body, headers).status_code == 200
    services.webhooks_drain(integration_id=integration.pk)
    event = WebhookEvent.objects.get()
    # Was `retrying` (AttributeError looked transient) until WEBHOOK_MAX_ATTEMPTS.
    assert (event.status, event.attempts) == ("dead", 1)
    assert event.last_error.startswith("UnusableEvent: AttributeError")
