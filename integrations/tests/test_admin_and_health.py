"""Admin actions (sync now, replay), integration health for monitoring, secrets from the
environment, and significant events re-scoring the customer."""

import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from integrations import selectors, services
from integrations.connectors.base import Delivery, secret_value
from integrations.models import SyncRun, WebhookEvent
from integrations.tests.conftest import STRIPE_SECRET
from integrations.tests.fakes import stripe_customer, stripe_event, stripe_header, stripe_list
from integrations.tests.receiver import deliver, hold_drain
from predictions.models import ChurnPrediction

pytestmark = pytest.mark.django_db


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_admin_sync_now_and_replay_actions(make_integration, admin_user, viewer, fake_api, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    objects = [stripe_customer(n, f"adm{n}@example.com") for n in range(3)]
    fake_api.routes[("GET", "/v1/customers")] = lambda p, q, b: stripe_list(objects, q, p)
    fake_api.routes[("GET", "/v1/subscriptions")] = lambda p, q, b: stripe_list([], q, p)
    integration = make_integration("stripe", api_base=fake_api.base_url)
    changelist = reverse("admin:integrations_integration_changelist")
    page = admin_client(admin_user).get(changelist)
    assert page.status_code == 200 and STRIPE_SECRET not in page.content.decode()

    refused = admin_client(viewer).post(changelist, {"action": "sync_now", "_selected_action": [integration.pk]})
    assert refused.status_code in (200, 302, 403) and SyncRun.objects.count() == 0
    admin_client(admin_user).post(changelist, {"action": "sync_now", "_selected_action": [integration.pk]})
    run = SyncRun.objects.get()  # eager in tests: already executed after commit? not in a test transaction
    assert run.trigger == "manual"
    services.sync_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.created) == ("succeeded", 3)

    body = json.dumps(
        stripe_event(
            "evt_dead",
            "invoice.payment_failed",
            {"id": "in_x", "object": "invoice", "customer": "cus_none", "amount_due": 1},
            int(time.time()),
        )
    )
    # Verified and stored as the receiver does it (its HTTP side: test_webhooks.py), inside this
    # test's transaction, so the admin pages below need no transactional test.
    delivery = Delivery(
        body=body.encode(),
        headers={"stripe-signature": stripe_header(body, STRIPE_SECRET)},
        method="POST",
        url=f"http://testserver/api/webhooks/stripe/{integration.pk}",
    )
    services.webhook_store(rows=services.webhook_verify(integration=integration, delivery=delivery))
    services.webhooks_drain(integration_id=integration.pk)
    event = WebhookEvent.objects.get(status="dead")
    health = {row["id"]: row for row in selectors.integration_health()}[integration.pk]
    assert (health["webhook_dead_letters"], health["webhook_backlog"], health["status"]) == (1, 0, "connected")
    assert health["sync_lag_seconds"] is not None and health["sync_lag_seconds"] >= 0

    events_changelist = reverse("admin:integrations_webhookevent_changelist")
    assert admin_client(admin_user).get(events_changelist).status_code == 200
    admin_client(admin_user).post(events_changelist, {"action": "replay", "_selected_action": [event.pk]})
    event.refresh_from_db()
    # Replayed: back in the queue with a fresh attempt budget (the drain runs after commit).
    assert (event.status, event.attempts, event.last_error) == ("received", 0, "")


@pytest.mark.django_db(transaction=True)  # the receiver commits on its own threads
def test_secrets_may_live_in_the_environment(monkeypatch, make_integration):
    monkeypatch.setenv("STRIPE_SIGNING_SECRET_TEST", "whsec_from_env")
    integration = make_integration("stripe", signing_secret="env:STRIPE_SIGNING_SECRET_TEST")
    assert secret_value("env:STRIPE_SIGNING_SECRET_TEST") == "whsec_from_env"
    body = json.dumps(
        stripe_event("evt_env", "customer.created", stripe_customer(1, "e@example.com"), int(time.time()))
    )
    hold_drain(integration)
    ok = deliver(integration, body.encode(), {"HTTP_STRIPE_SIGNATURE": stripe_header(body, "whsec_from_env")})
    assert ok.status_code == 200
    literal = deliver(
        integration, body.encode(), {"HTTP_STRIPE_SIGNATURE": stripe_header(body, "env:STRIPE_SIGNING_SECRET_TEST")}
    )
    assert literal.status_code == 401


@pytest.mark.django_db(transaction=True)  # the receiver commits on its own threads
def test_an_opened_ticket_rescores_the_customer_after_commit(
    make_integration, make_customer, django_capture_on_commit_callbacks
):
    from integrations.tests.conftest import GENERIC_SECRET
    from integrations.tests.fakes import standard_headers

    customer = make_customer(email="rescore@example.com")
    integration = make_integration("generic")
    body = json.dumps(
        {
            "type": "ticket.changed",
            "data": {
                "id": "T-1",
                "customerEmail": "rescore@example.com",
                "subject": "Broken",
                "status": "open",
                "updatedAt": "2026-01-01T00:00:00Z",
            },
        }
    ).encode()
    hold_drain(integration)  # processed by the drain below, not before the answer
    answer = deliver(integration, body, standard_headers(GENERIC_SECRET, "msg_rescore", int(time.time()), body))
    assert answer.status_code == 200
    assert not ChurnPrediction.objects.filter(customer=customer).exists()
    with django_capture_on_commit_callbacks(execute=True):
        services.webhooks_drain(integration_id=integration.pk)
    assert ChurnPrediction.objects.filter(customer=customer).count() == 1
    customer.refresh_from_db()
    assert customer.support_tickets == 1
