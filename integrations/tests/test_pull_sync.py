"""Pull syncs against loopback servers speaking each provider's API: pagination, 429 with
Retry-After, 500s and timeouts retried with backoff, permanent errors failing the run, cursors,
sync_runs records, integration health, "sync now" and the per-integration beat schedule."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alerts.models import Alert
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket
from integrations import services
from integrations.models import Integration, SyncRun
from integrations.tests.fakes import stripe_customer, stripe_event, stripe_list, stripe_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.INTEGRATION_RETRY_BASE_SECONDS = 0.01
    settings.INTEGRATION_RETRY_MAX_SECONDS = 0.05
    settings.INTEGRATION_HTTP_TIMEOUT_SECONDS = 0.5


def run_sync(integration: Integration) -> SyncRun:
    run = services.sync_start(integration_id=integration.pk)
    return services.sync_execute(run_id=run.pk)


def stripe_world(fake_api, customers: int = 250):
    state = {
        "customers": [stripe_customer(n, f"s{n}@example.com") for n in range(customers)],
        "subscriptions": [stripe_subscription(n, f"cus_{n}", cents=1000 * (n % 7 + 1)) for n in range(customers)],
        "events": [],
    }
    fake_api.routes[("GET", "/v1/customers")] = lambda p, q, b: stripe_list(state["customers"], q, p)
    fake_api.routes[("GET", "/v1/subscriptions")] = lambda p, q, b: stripe_list(state["subscriptions"], q, p)

    def events(path, query, body):
        since = int(query.get("created[gte]", 0))
        newest_first = sorted((e for e in state["events"] if e["created"] >= since), key=lambda e: -e["created"])
        return stripe_list(newest_first, query, path)

    fake_api.routes[("GET", "/v1/events")] = events
    return state


def test_stripe_backfill_then_incremental_events_through_faults(fake_api, make_integration):
    state = stripe_world(fake_api)
    integration = make_integration("stripe", api_base=fake_api.base_url)
    fake_api.fail("/v1/customers", (429, {"error": "rate"}, {"Retry-After": "0.2"}), (500, {}, {}))
    fake_api.fail("/v1/subscriptions", "stall")  # longer than the client's timeout: retried

    run = run_sync(integration)

    assert (run.status, run.fetched, run.created, run.failed, run.error) == ("succeeded", 500, 500, 0, "")
    customers_calls = [c for c in fake_api.calls if c[1] == "/v1/customers"]
    assert len(customers_calls) == 5  # 429, 500, then 3 pages of 100
    assert customers_calls[1][4] - customers_calls[0][4] >= 0.2  # Retry-After obeyed
    assert [c[2].get("starting_after") for c in customers_calls[2:]] == [None, "cus_99", "cus_199"]
    assert Customer.objects.count() == 250
    assert Customer.objects.get(email="s3@example.com").mrr == Decimal("40.00")
    integration.refresh_from_db()
    assert integration.status == "connected" and integration.last_sync_at == run.finished_at
    assert integration.cursor["events_since"] > 0

    # Incremental: only events since the cursor; a cancellation churns the customer.
    t = integration.cursor["events_since"]
    cancelled = stripe_subscription(3, "cus_3", status="canceled", ended_at=t + 5)
    state["events"] = [
        stripe_event("evt_old", "customer.subscription.updated", stripe_subscription(3, "cus_3"), t - 500),
        stripe_event("evt_cancel", "customer.subscription.deleted", cancelled, t + 5),
        stripe_event(
            "evt_fail",
            "invoice.payment_failed",
            {"id": "in_1", "object": "invoice", "customer": "cus_4", "amount_due": 2500},
            t + 6,
        ),
    ]
    run = run_sync(integration)
    assert (run.status, run.fetched) == ("succeeded", 2)
    customer = Customer.objects.get(email="s3@example.com")
    assert (customer.mrr, customer.is_active, customer.churned_at) == (
        Decimal("0"),
        False,
        dt.datetime.fromtimestamp(t + 5, tz=dt.UTC),
    )
    assert BillingEvent.objects.filter(kind="payment_failed").get().customer.email == "s4@example.com"
    integration.refresh_from_db()
    assert integration.cursor["events_since"] == t + 6

    # The same window again: nothing changes twice.
    integration.cursor = {"events_since": t}
    integration.save()
    run = run_sync(integration)
    assert (run.created, run.updated) == (0, 0)
    assert BillingEvent.objects.filter(kind="payment_failed").count() == 1


def test_permanent_error_fails_the_run_without_retrying_and_raises_an_alert(fake_api, make_integration):
    stripe_world(fake_api)
    integration = make_integration("stripe", api_base=fake_api.base_url)
    fake_api.fail("/v1/customers", (401, {"error": {"message": "Invalid API Key"}}, {}))
    run = run_sync(integration)
    assert run.status == "failed" and "HTTP 401" in run.error
    assert len([c for c in fake_api.calls if c[1] == "/v1/customers"]) == 1
    integration.refresh_from_db()
    assert (integration.status, integration.consecutive_failures) == ("error", 1)
    assert "HTTP 401" in integration.last_error and integration.last_sync_at is None
    assert Alert.objects.get().title == f"Sync failed: {integration.name}"


def test_transient_errors_past_the_attempt_budget_fail_the_run(fake_api, make_integration, settings):
    settings.INTEGRATION_HTTP_ATTEMPTS = 3
    stripe_world(fake_api)
    integration = make_integration("stripe", api_base=fake_api.base_url)
    fake_api.fail("/v1/customers", *[(503, {}, {})] * 3)
    run = run_sync(integration)
    assert run.status == "failed" and "HTTP 503" in run.error
    assert len([c for c in fake_api.calls if c[1] == "/v1/customers"]) == 3


def test_hubspot_pull_owners_companies_contacts_with_paging_and_cursor(fake_api, make_integration, make_user):
    owner = make_user("csm")
    owner.email = "rep@example.com"
    owner.save()
    integration = make_integration("hubspot", api_base=fake_api.base_url)
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    companies = [
        {
            "id": str(n),
            "properties": {"name": f"Co {n}", "hubspot_owner_id": "1"},
            "createdAt": base.isoformat(),
            "updatedAt": (base + dt.timedelta(minutes=n)).isoformat(),
        }
        for n in range(150)
    ]
    contacts = [
        {
            "id": f"c{n}",
            "properties": {"email": f"buyer{n}@co{n}.example", "associatedcompanyid": str(n)},
            "createdAt": base.isoformat(),
            "updatedAt": (base + dt.timedelta(minutes=n)).isoformat(),
        }
        for n in range(150)
    ]
    fake_api.routes[("GET", "/crm/v3/owners")] = lambda p, q, b: (
        200,
        {"results": [{"id": "1", "email": "rep@example.com", "updatedAt": base.isoformat()}]},
        {},
    )

    def search(items):
        def handler(path, query, body):
            since = int(body["filterGroups"][0]["filters"][0]["value"])
            matching = [i for i in items if int(dt.datetime.fromisoformat(i["updatedAt"]).timestamp() * 1000) >= since]
            start = int(body.get("after") or 0)
            page = matching[start : start + body["limit"]]
            paging = {"next": {"after": str(start + len(page))}} if start + len(page) < len(matching) else {}
            return 200, {"total": len(matching), "results": page, "paging": paging}, {}

        return handler

    fake_api.routes[("POST", "/crm/v3/objects/companies/search")] = search(companies)
    fake_api.routes[("POST", "/crm/v3/objects/contacts/search")] = search(contacts)
    fake_api.fail("/crm/v3/objects/contacts/search", (429, {}, {"Retry-After": "0"}))
    run = run_sync(integration)
    assert (run.status, run.fetched) == ("succeeded", 301), run.error
    assert Customer.objects.count() == 150
    c = Customer.objects.get(email="buyer7@co7.example")
    assert (c.company, c.name, c.owner_id) == ("Co 7", "Co 7", owner.pk)
    integration.refresh_from_db()
    last = int((base + dt.timedelta(minutes=149)).timestamp() * 1000)
    assert integration.cursor == {"companies_since": last, "contacts_since": last}


def test_zendesk_incremental_tickets_and_ratings(fake_api, make_integration, make_customer):
    customer = make_customer(email="req@example.com", support_tickets=0, nps_score=None)
    integration = make_integration("zendesk", api_base=fake_api.base_url)
    now = timezone.now().replace(microsecond=0)
    tickets = [
        {
            "id": n,
            "subject": f"T{n}",
            "status": "open" if n % 2 else "solved",
            "priority": "high",
            "requester_id": 500,
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
        }
        for n in range(1, 6)
    ]
    pages = {None: (tickets[:3], "cur1", False), "cur1": (tickets[3:], "cur2", True)}

    def export(path, query, body):
        rows, after, end = pages[query.get("cursor")]
        return (
            200,
            {
                "tickets": rows,
                "users": [{"id": 500, "email": "req@example.com"}],
                "after_cursor": after,
                "end_of_stream": end,
            },
            {},
        )

    fake_api.routes[("GET", "/api/v2/incremental/tickets/cursor.json")] = export
    fake_api.routes[("GET", "/api/v2/satisfaction_ratings")] = lambda p, q, b: (
        200,
        {
            "satisfaction_ratings": [
                {"id": 9, "score": "good", "ticket_id": 2, "created_at": now.isoformat(), "updated_at": now.isoformat()}
            ],
            "meta": {"has_more": False},
        },
        {},
    )
    run = run_sync(integration)
    assert (run.status, run.fetched, run.failed) == ("succeeded", 6, 0), run.error
    customer.refresh_from_db()
    assert (customer.support_tickets, customer.nps_score) == (3, 9)
    assert SupportTicket.objects.count() == 5 and NpsResponse.objects.count() == 1
    integration.refresh_from_db()
    assert integration.cursor["tickets_cursor"] == "cur2"


def test_a_page_with_one_bad_record_counts_it_failed_and_keeps_the_rest(fake_api, make_integration):
    integration = make_integration("zendesk", api_base=fake_api.base_url)
    now = timezone.now().isoformat()
    fake_api.routes[("GET", "/api/v2/incremental/tickets/cursor.json")] = lambda p, q, b: (
        200,
        {
            "tickets": [
                {"id": 1, "subject": "x", "status": "open", "requester_id": 1, "created_at": now, "updated_at": now}
            ],
            "users": [{"id": 1, "email": "nobody@example.com"}],
            "end_of_stream": True,
        },
        {},
    )
    fake_api.routes[("GET", "/api/v2/satisfaction_ratings")] = lambda p, q, b: (200, {"satisfaction_ratings": []}, {})
    run = run_sync(integration)
    assert (run.status, run.fetched, run.failed) == ("succeeded", 1, 1)
    assert "No customer matches" in run.error


def test_sync_now_api_and_schedule(
    fake_api, make_integration, api_for, manager, csm, viewer, django_assert_max_num_queries
):
    stripe_world(fake_api, customers=3)
    integration = make_integration("stripe", api_base=fake_api.base_url)
    assert api_for(viewer).post(f"/api/integrations/{integration.pk}/sync").status_code == 403
    assert api_for(csm).post(f"/api/integrations/{integration.pk}/sync").status_code == 403
    assert SyncRun.objects.count() == 0
    response = api_for(manager).post(f"/api/integrations/{integration.pk}/sync")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "running" and response.json()["trigger"] == "manual"
    conflict = api_for(manager).post(f"/api/integrations/{integration.pk}/sync")
    assert conflict.status_code == 409 and set(conflict.json()) == {"message", "code", "errors"}
    assert api_for(manager).post("/api/integrations/999999/sync").status_code == 404
    services.sync_execute(run_id=response.json()["id"])

    make_integration("segment")
    with django_assert_max_num_queries(4):
        rows = api_for(viewer).get("/api/integrations").json()
    stripe_row = next(r for r in rows if r["id"] == integration.pk)
    assert stripe_row["status"] == "connected" and stripe_row["lagSeconds"] is not None
    assert (stripe_row["webhookBacklog"], stripe_row["deadLetters"], stripe_row["failedRuns24h"]) == (0, 0, 0)
    assert "api_key" not in json.dumps(rows) and "signing_secret" not in json.dumps(rows)

    assert services.integration_schedules_sync() == 2
    task = PeriodicTask.objects.get(name=f"integration-sync:{integration.pk}")
    assert (task.task, json.loads(task.args), task.interval.every, task.enabled) == (
        "integrations.tasks.sync_integration",
        [integration.pk],
        15,
        True,
    )
    assert not PeriodicTask.objects.filter(name__startswith="integration-sync:").exclude(pk=task.pk).exists()


def test_w4_reconciliation_fills_deliveries_that_never_arrived(fake_api, make_integration):
    """Webhooks deliver 95 of 100 events; the pull of /v1/events since the cursor applies the 5
    missing ones and nothing twice."""
    import time

    from integrations.connectors.base import Delivery
    from integrations.models import WebhookEvent
    from integrations.tests.conftest import STRIPE_SECRET
    from integrations.tests.fakes import stripe_header

    state = stripe_world(fake_api, customers=100)
    integration = make_integration("stripe", api_base=fake_api.base_url)
    run_sync(integration)  # backfill: 100 customers with subscriptions
    integration.refresh_from_db()
    t = integration.cursor["events_since"]
    state["events"] = [
        stripe_event(
            f"evt_{n}",
            "invoice.payment_failed",
            {"id": f"in_{n}", "object": "invoice", "customer": f"cus_{n}", "amount_due": 100 * (n + 1)},
            t + n % 7,
        )
        for n in range(100)
    ]
    # Verified and stored as the receiver does it (its HTTP side: test_webhooks.py), inside this
    # test's transaction: a transactional test would also run the sync's after-commit re-scores.
    for event in state["events"][5:]:
        body = json.dumps(event)
        delivery = Delivery(
            body=body.encode(),
            headers={"stripe-signature": stripe_header(body, STRIPE_SECRET, int(time.time()))},
            method="POST",
            url=f"http://testserver/api/webhooks/stripe/{integration.pk}",
        )
        rows = services.webhook_verify(integration=integration, delivery=delivery)  # raises on a bad signature
        assert services.webhook_store(rows=rows) == {integration.pk}
    services.webhooks_drain(integration_id=integration.pk)
    assert BillingEvent.objects.filter(kind="payment_failed").count() == 95
    run = run_sync(integration)
    assert (run.status, run.fetched, run.created, run.failed) == ("succeeded", 100, 5, 0)
    failed = BillingEvent.objects.filter(kind="payment_failed")
    assert sorted(failed.values_list("external_id", flat=True)) == sorted(
        f"{integration.pk}:in_{n}" for n in range(100)
    )
    assert WebhookEvent.objects.filter(status="processed").count() == 95
