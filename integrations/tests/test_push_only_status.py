"""An integration that only receives pushes (Segment, the generic webhook) has no API to test or
pull: the first verified delivery is what makes it connected, and the admin says when the last
one arrived. A refused delivery proves nothing and changes nothing."""

import json
import re
import time

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations.models import Integration, WebhookEvent
from integrations.selectors import receives_pushes_only
from integrations.tests.conftest import GENERIC_SECRET, SEGMENT_SECRET
from integrations.tests.fakes import segment_headers, standard_headers, stripe_header
from integrations.tests.receiver import deliver

pytestmark = pytest.mark.django_db(transaction=True)


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _state(html: str) -> str:
    """The text of the status pills on a page (list or change form)."""
    return " | ".join(re.findall(r'<span class="cs-pill cs-int-[a-z]+">([^<]*)</span>', html))


def _not_connected(make_integration, provider: str) -> Integration:
    integration = make_integration(provider)
    Integration.objects.filter(pk=integration.pk).update(status=Integration.Status.DISCONNECTED)
    integration.refresh_from_db()
    return integration


def _segment_event(n: int) -> bytes:
    return json.dumps({"messageId": f"first-{n}", "type": "track", "event": "Signed In", "userId": "u1"}).encode()


def test_only_push_providers_count_as_push_only(make_integration):
    assert receives_pushes_only(make_integration("segment"))
    assert receives_pushes_only(make_integration("generic"))
    assert not receives_pushes_only(make_integration("stripe"))
    assert not receives_pushes_only(make_integration("hubspot"))


def test_a_signed_segment_delivery_connects_it_and_the_admin_says_so(make_integration, admin_user):
    integration = _not_connected(make_integration, "segment")
    changelist = reverse("admin:integrations_integration_changelist")
    change = reverse("admin:integrations_integration_change", args=[integration.pk])
    assert _state(_admin(admin_user).get(changelist).content.decode()) == "Not connected: no signed event received yet"
    body = _segment_event(1)
    before = timezone.now()

    answer = deliver(integration, body, segment_headers(SEGMENT_SECRET, body))

    assert answer.status_code == 200
    integration.refresh_from_db()
    event = WebhookEvent.objects.get(integration=integration)
    assert integration.status == Integration.Status.CONNECTED
    assert integration.last_event_at == event.received_at
    assert integration.last_event_at >= before
    when = timezone.localtime(event.received_at).strftime("%-d %b %Y %H:%M")
    client = _admin(admin_user)
    assert _state(client.get(changelist).content.decode()) == f"Receiving events, last at {when}"
    assert _state(client.get(change).content.decode()) == f"Receiving events, last at {when}"


def test_a_refused_delivery_leaves_it_not_connected(make_integration, admin_user):
    integration = _not_connected(make_integration, "segment")
    body = _segment_event(2)

    answer = deliver(integration, body, segment_headers("not-the-secret", body))

    assert answer.status_code == 401
    integration.refresh_from_db()
    assert integration.status == Integration.Status.DISCONNECTED
    assert integration.last_event_at is None
    assert not WebhookEvent.objects.filter(integration=integration).exists()


def test_a_signed_generic_webhook_connects_it_and_the_time_never_goes_back(make_integration):
    integration = _not_connected(make_integration, "generic")
    body = json.dumps({"type": "nps.received", "data": {"id": "n1", "customerEmail": "x@example.com"}}).encode()

    answer = deliver(integration, body, standard_headers(GENERIC_SECRET, "msg_first", int(time.time()), body))

    assert answer.status_code == 200
    integration.refresh_from_db()
    first = WebhookEvent.objects.get(integration=integration)
    assert integration.status == Integration.Status.CONNECTED
    assert integration.last_event_at == first.received_at
    # The same event again (a provider retry) is a duplicate: nothing new arrived.
    deliver(integration, body, standard_headers(GENERIC_SECRET, "msg_first", int(time.time()), body))
    integration.refresh_from_db()
    assert integration.last_event_at == first.received_at


def test_a_delivery_does_not_connect_a_provider_that_can_be_tested(make_integration):
    """Stripe has an API: a connection test or a sync says whether its credentials work."""
    integration = _not_connected(make_integration, "stripe")
    body = json.dumps({"id": "evt_1", "type": "customer.created", "created": int(time.time()), "data": {}}).encode()

    deliver(integration, body, {"HTTP_STRIPE_SIGNATURE": stripe_header(body.decode(), "whsec_test_stripe_secret")})

    integration.refresh_from_db()
    assert integration.status == Integration.Status.DISCONNECTED
    assert integration.last_event_at == WebhookEvent.objects.get(integration=integration).received_at
