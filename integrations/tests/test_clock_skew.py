"""Clock skew (RELIABILITY X5, unit part): each timestamped signature scheme accepts a delivery
signed 299 s before or after our clock and refuses one at 301 s, with time frozen by time-machine.
A delivery refused only for its timestamp says so: code `clock_skew`, a log line naming it, and
`churnshield_webhook_rejections_total{reason="clock_skew"}` on /metrics, so ops can tell a skewed
clock from a bad secret."""

import datetime as dt
import json
import logging

import pytest
import time_machine
from django.core.cache import cache

from integrations.models import WebhookEvent
from integrations.selectors import webhook_rejection_counts
from integrations.tests.conftest import GENERIC_SECRET, HUBSPOT_SECRET, STRIPE_SECRET, ZENDESK_SECRET
from integrations.tests.fakes import hubspot_headers, standard_headers, stripe_header, zendesk_headers
from integrations.tests.receiver import deliver, hold_drain
from monitoring.metrics import collector

# Through the receiver over ASGI, which commits on its own threads. Each test loops over its
# cases, starting each from nothing stored and no rejection counted (a flush per test is slow).
pytestmark = pytest.mark.django_db(transaction=True)
NOW = dt.datetime(2026, 3, 8, 6, 59, 30, tzinfo=dt.UTC)  # any instant; this one is near a US DST change


def signed(provider: str, integration_id: int, offset: int, secret: str | None = None) -> tuple[bytes, dict]:
    """A delivery whose signed timestamp is `offset` seconds from NOW (negative: in the past)."""
    stamp = int(NOW.timestamp()) + offset
    if provider == "stripe":
        body = json.dumps({"id": "evt_1", "object": "event", "type": "customer.created", "data": {}}).encode()
        return body, {"HTTP_STRIPE_SIGNATURE": stripe_header(body.decode(), secret or STRIPE_SECRET, stamp)}
    if provider == "hubspot":
        body = json.dumps([{"eventId": 1, "subscriptionType": "company.propertyChange", "objectId": 5}]).encode()
        uri = f"http://testserver/api/webhooks/hubspot/{integration_id}"
        return body, hubspot_headers(secret or HUBSPOT_SECRET, "POST", uri, body, stamp * 1000)
    if provider == "zendesk":
        body = json.dumps({"id": "zd-1", "type": "zen:event-type:ticket.created", "detail": {"id": 1}}).encode()
        iso = dt.datetime.fromtimestamp(stamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return body, zendesk_headers(secret or ZENDESK_SECRET, body, iso)
    body = json.dumps({"type": "customer.updated", "data": {}}).encode()
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="  # a valid Standard Webhooks secret, not ours
    return body, standard_headers(other if secret else GENERIC_SECRET, "msg_1", stamp, body)


TIMESTAMPED = ["stripe", "hubspot", "zendesk", "generic"]


def fresh_case(integration, caplog) -> None:
    """Nothing stored, no rejection counted, no log line: each case as a test of its own."""
    WebhookEvent.objects.all().delete()
    cache.clear()  # the rejection counters
    caplog.clear()
    hold_drain(integration)  # stored, not applied: the time window is the subject


@pytest.mark.parametrize("provider", TIMESTAMPED)
def test_the_time_window_edges(make_integration, caplog, provider):
    integration = make_integration(provider)
    for offset, accepted in [(-301, False), (-299, True), (299, True), (301, False)]:
        fresh_case(integration, caplog)
        body, headers = signed(provider, integration.pk, offset)
        with time_machine.travel(NOW, tick=False), caplog.at_level(logging.WARNING, logger="integrations"):
            response = deliver(integration, body, headers)
        counts = webhook_rejection_counts()
        if accepted:
            assert response.status_code == 200, (offset, response.content)
            assert WebhookEvent.objects.count() == 1, offset
            assert sum(counts.values()) == 0, offset
            continue
        assert response.status_code == 401, offset
        assert response.json()["code"] == "clock_skew", offset
        assert WebhookEvent.objects.count() == 0, offset
        assert {pair: n for pair, n in counts.items() if n} == {(provider, "clock_skew"): 1}, offset
        (record,) = [r for r in caplog.records if r.name == "integrations.services"]
        assert "webhook rejected (clock_skew)" in record.getMessage()
        assert (record.reason, record.provider, record.integration_id) == ("clock_skew", provider, integration.pk)


def test_a_bad_secret_is_counted_apart_from_skew(make_integration, caplog):
    for provider in TIMESTAMPED:
        integration = make_integration(provider)
        fresh_case(integration, caplog)
        body, headers = signed(provider, integration.pk, 0, secret="whsec_someone_else")
        with time_machine.travel(NOW, tick=False), caplog.at_level(logging.WARNING, logger="integrations"):
            response = deliver(integration, body, headers)
        assert response.status_code == 401, provider
        assert response.json()["code"] == "invalid_signature", provider
        assert {pair: n for pair, n in webhook_rejection_counts().items() if n} == {(provider, "invalid_signature"): 1}
        assert "clock_skew" not in caplog.text, provider


def test_rejections_by_reason_are_on_metrics(client, make_integration):
    stripe = make_integration("stripe")
    for offset, secret in ((400, None), (-400, None), (0, "whsec_wrong")):
        body, headers = signed("stripe", stripe.pk, offset, secret)
        with time_machine.travel(NOW, tick=False):
            assert deliver(stripe, body, headers).status_code == 401
    collector.clear_cache()
    text = client.get("/metrics").content.decode()
    assert 'churnshield_webhook_rejections_total{provider="stripe",reason="clock_skew"} 2.0' in text
    assert 'churnshield_webhook_rejections_total{provider="stripe",reason="invalid_signature"} 1.0' in text
    assert 'churnshield_webhook_rejections_total{provider="hubspot",reason="clock_skew"} 0.0' in text


def out_of_range(provider: str, integration_id: int, stamp: str) -> tuple[bytes, dict]:
    """A delivery correctly signed over a timestamp header that is no usable time."""
    if provider == "stripe":
        body = json.dumps({"id": "evt_1", "object": "event", "type": "customer.created", "data": {}}).encode()
        return body, {"HTTP_STRIPE_SIGNATURE": stripe_header(body.decode(), STRIPE_SECRET, int(stamp))}
    if provider == "hubspot":
        body = json.dumps([{"eventId": 1, "subscriptionType": "company.propertyChange", "objectId": 5}]).encode()
        uri = f"http://testserver/api/webhooks/hubspot/{integration_id}"
        return body, hubspot_headers(HUBSPOT_SECRET, "POST", uri, body, stamp)
    if provider == "zendesk":
        body = json.dumps({"id": "zd-1", "type": "zen:event-type:ticket.created", "detail": {"id": 1}}).encode()
        return body, zendesk_headers(ZENDESK_SECRET, body, stamp)
    # Standard Webhooks cannot sign a time beyond the calendar: the library refuses it unsigned.
    body = json.dumps({"type": "customer.updated", "data": {}}).encode()
    return body, {"HTTP_WEBHOOK_ID": "msg_1", "HTTP_WEBHOOK_TIMESTAMP": stamp, "HTTP_WEBHOOK_SIGNATURE": "v1,AAAA"}


OUT_OF_RANGE = [
    ("hubspot", "¹²³4567890123", "invalid_signature"),  # isdigit() says yes, int() says no
    ("hubspot", "9" * 16, "clock_skew"),  # milliseconds past year 9999
    ("zendesk", "9" * 20, "invalid_signature"),  # not a time at all
    ("stripe", "9" * 20, "clock_skew"),  # past the platform's time_t
    ("generic", "9" * 20, "invalid_signature"),
]


def test_timestamps_out_of_range_are_refused_like_a_bad_signature(make_integration, caplog):
    """Headers on the wire as latin-1, as a server decodes them."""
    for provider, stamp, code in OUT_OF_RANGE:
        integration = make_integration(provider)
        fresh_case(integration, caplog)
        body, headers = out_of_range(provider, integration.pk, stamp)
        response = deliver(integration, body, headers)
        assert (response.status_code, response.json()["code"]) == (401, code), (provider, stamp, response.content)
        assert WebhookEvent.objects.count() == 0
        assert {pair: n for pair, n in webhook_rejection_counts().items() if n} == {(provider, code): 1}
