"""Webhooks through the receiver (`integrations.asgi`, in-process over ASGI): signatures the
providers' way (W1), dedupe, idempotent and order-free processing (W2), dead letters and replay
(W4), the outbox (C2), and the payment-failed hook.

The receiver commits on its own threads: these tests run on committed rows (transactional).
Each signature matrix is one test looping over its cases (a flush per test is the slow part),
every case asserting its answer and, when refused, that nothing was written."""

import datetime as dt
import json
import random
import time
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from alerts.models import Alert
from core import events
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from integrations import asgi as receiver
from integrations import services
from integrations.api.schema import ERRORS, PATH, add_webhook_route
from integrations.models import ExternalRecord, WebhookEvent
from integrations.tests.conftest import GENERIC_SECRET, HUBSPOT_SECRET, SEGMENT_SECRET, STRIPE_SECRET, ZENDESK_SECRET
from integrations.tests.fakes import (
    hubspot_headers,
    segment_headers,
    standard_headers,
    stripe_customer,
    stripe_event,
    stripe_header,
    stripe_subscription,
    zendesk_headers,
)
from integrations.tests.receiver import deliver, deliver_many, hold_drain, post
from playbooks import approvals
from playbooks.models import PlaybookExecution, TriggerRule
from playbooks.services import playbook_upsert

pytestmark = pytest.mark.django_db(transaction=True)


def counts() -> tuple[int, ...]:
    return (
        WebhookEvent.objects.count(),
        Customer.objects.count(),
        ExternalRecord.objects.count(),
        BillingEvent.objects.count(),
    )


def stripe_body(event: dict) -> bytes:
    return json.dumps(event).encode()


# --- W1: the signature matrix -------------------------------------------------------------------------


def _stripe_case(case: str, body: bytes, now: int) -> tuple[bytes, dict]:
    text = body.decode()
    good = stripe_header(text, STRIPE_SECRET, now)
    headers = {
        "valid": good,
        "body_changed": good,
        "missing": None,
        "malformed": "garbage",
        "wrong_scheme": good.replace("v1=", "v0="),
        "wrong_secret": stripe_header(text, "whsec_other", now),
        "one_of_several": f"{stripe_header(text, 'whsec_other', now)},{good.split(',')[1]}",
        "old_301": stripe_header(text, STRIPE_SECRET, now - 301),
        "old_299": stripe_header(text, STRIPE_SECRET, now - 299),
        "new_299": stripe_header(text, STRIPE_SECRET, now + 299),
        "new_301": stripe_header(text, STRIPE_SECRET, now + 301),
        "ts_not_numeric": good.replace(f"t={now}", "t=abc"),
    }[case]
    sent = body + b" " if case == "body_changed" else body
    return sent, ({"HTTP_STRIPE_SIGNATURE": headers} if headers else {})


STRIPE_CASES = {
    "valid": 200,
    "body_changed": 401,
    "missing": 401,
    "malformed": 401,
    "wrong_scheme": 401,
    "wrong_secret": 401,
    "one_of_several": 200,
    "old_301": 401,
    "old_299": 200,
    "new_299": 200,
    "new_301": 401,
    "ts_not_numeric": 401,
}


def test_stripe_signature_matrix(make_integration):
    integration = make_integration("stripe")
    hold_drain(integration)  # stored, not applied: the signature is the subject
    now = int(time.time())
    for case, expected in STRIPE_CASES.items():
        event_id = f"evt_{case}"  # one id per case: an accepted case is not a duplicate of the last
        body = stripe_body(stripe_event(event_id, "customer.created", stripe_customer(1, "a@example.com"), now))
        before = counts()
        sent, headers = _stripe_case(case, body, now)
        # Frozen at `now`: under load a second could pass before the check and move the 301 s edge.
        with time_machine.travel(dt.datetime.fromtimestamp(now, tz=dt.UTC), tick=False):
            response = deliver(integration, sent, headers)
        assert response.status_code == expected, (case, response.content)
        if expected == 401:
            assert set(response.json()) == {"message", "code", "errors"}, case
            assert counts() == before, case  # a rejected delivery writes nothing
            if case in {"old_301", "new_301"}:
                assert response.json()["code"] == "clock_skew"  # told apart from a bad secret (X5)
        else:
            assert response.json() == {"received": 1}, case
            assert WebhookEvent.objects.filter(event_id=event_id).count() == 1, case
    assert WebhookEvent.objects.count() == list(STRIPE_CASES.values()).count(200)


def test_stripe_rotated_secret_is_accepted_while_listed(make_integration):
    integration = make_integration("stripe", signing_secrets=["whsec_previous"])
    now = int(time.time())
    body = stripe_body(stripe_event("evt_rot", "customer.created", stripe_customer(1, "a@example.com"), now))
    assert (
        deliver(
            integration, body, {"HTTP_STRIPE_SIGNATURE": stripe_header(body.decode(), "whsec_previous")}
        ).status_code
        == 200
    )
    integration.config["signing_secrets"] = []
    integration.save()
    # The receiver keeps a config CONFIG_TTL_SECONDS; a process started after the change reads it anew.
    receiver._configs.clear()
    body2 = body.replace(b"evt_rot", b"evt_rot2")
    response = deliver(integration, body2, {"HTTP_STRIPE_SIGNATURE": stripe_header(body2.decode(), "whsec_previous")})
    assert response.status_code == 401
    assert WebhookEvent.objects.count() == 1


HUBSPOT_CASES = {
    "valid": 200,
    "changed_query": 401,
    "seconds_not_ms": 401,
    "old_301": 401,
    "new_301": 401,
    "new_299": 200,
    "wrong_encoding_hex": 401,
    "missing": 401,
}


def test_hubspot_v3_signature_matrix(make_integration):
    integration = make_integration("hubspot")
    hold_drain(integration)  # stored, not applied: the signature is the subject
    uri = f"http://testserver/api/webhooks/hubspot/{integration.pk}"
    for n, (case, expected) in enumerate(HUBSPOT_CASES.items()):
        body = json.dumps([{"eventId": 11 + n, "subscriptionType": "company.propertyChange", "objectId": 5}]).encode()
        now_ms = int(time.time() * 1000)
        stamp = {"old_301": now_ms - 301_000, "new_301": now_ms + 301_000, "new_299": now_ms + 299_000}.get(
            case, now_ms
        )
        headers = hubspot_headers(
            HUBSPOT_SECRET, "POST", uri + ("?a=1" if case == "changed_query" else ""), body, stamp
        )
        if case == "seconds_not_ms":
            headers = hubspot_headers(HUBSPOT_SECRET, "POST", uri, body, now_ms // 1000)
        if case == "wrong_encoding_hex":
            headers["HTTP_X_HUBSPOT_SIGNATURE_V3"] = base64_to_hex(headers["HTTP_X_HUBSPOT_SIGNATURE_V3"])
        if case == "missing":
            headers = {}
        before = counts()
        # Frozen at the signing instant, as in the Stripe matrix: a slow second must not move the edges.
        with time_machine.travel(dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC), tick=False):
            response = deliver(integration, body, headers)
        assert response.status_code == expected, (case, response.content)
        if expected == 401:
            assert counts() == before, case
        else:
            assert WebhookEvent.objects.filter(event_id=str(11 + n)).count() == 1, case
    assert WebhookEvent.objects.count() == 2


def base64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


ZENDESK_CASES = {"valid": 200, "body_changed": 401, "old_301": 401, "new_301": 401, "old_299": 200, "bad_time": 401}


def test_zendesk_signature_matrix(make_integration):
    integration = make_integration("zendesk")
    hold_drain(integration)  # stored, not applied: the signature is the subject
    for case, expected in ZENDESK_CASES.items():
        event_id = f"zd-evt-{case}"
        body = json.dumps({"id": event_id, "type": "zen:event-type:ticket.created", "detail": {"id": 1}}).encode()
        offset = {"old_301": -301, "new_301": 301, "old_299": -299}.get(case, 0)
        now = timezone.now().replace(microsecond=0)  # the header carries whole seconds
        stamp = (now + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = zendesk_headers(ZENDESK_SECRET, body, stamp if case != "bad_time" else "yesterday")
        before = counts()
        with time_machine.travel(now, tick=False):  # a slow second must not move the ±300 s edges
            response = deliver(integration, body + (b"\n" if case == "body_changed" else b""), headers)
        assert response.status_code == expected, (case, response.content)
        if expected == 401:
            assert counts() == before, case
        else:
            assert WebhookEvent.objects.filter(event_id=event_id).count() == 1, case
    assert WebhookEvent.objects.count() == 2


def test_segment_signature_matrix(make_integration):
    integration = make_integration("segment")
    hold_drain(integration)  # stored, not applied: the signature is the subject
    for case, expected in {"valid": 200, "wrong": 401, "reordered_keys": 401}.items():
        event = {"messageId": f"m-{case}", "type": "track", "event": "Report Built", "userId": "u1"}
        body = json.dumps(event).encode()
        headers = segment_headers(SEGMENT_SECRET if case != "wrong" else "nope", body)
        sent = json.dumps(dict(reversed(event.items()))).encode() if case == "reordered_keys" else body
        before = counts()
        assert deliver(integration, sent, headers).status_code == expected, case
        assert counts() == before if expected == 401 else WebhookEvent.objects.count() == 1, case
    assert WebhookEvent.objects.count() == 1


def test_standard_webhooks_known_answer_vector_and_window(make_integration):
    """The Svix known-answer vector, checked through our endpoint at the vector's own time."""
    integration = make_integration("generic")
    hold_drain(integration)
    body = b'{"test": 2432232314}'
    headers = {
        "HTTP_SVIX_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "HTTP_SVIX_TIMESTAMP": "1614265330",
        "HTTP_SVIX_SIGNATURE": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    with time_machine.travel(dt.datetime.fromtimestamp(1614265330 + 299, tz=dt.UTC), tick=False):
        assert deliver(integration, body, headers).status_code == 200
    with time_machine.travel(dt.datetime.fromtimestamp(1614265330 - 301, tz=dt.UTC), tick=False):
        headers["HTTP_SVIX_ID"] = "msg_other"  # a different id: the signature no longer matches anyway
        response = deliver(integration, body, headers)
        assert response.status_code == 401
    assert WebhookEvent.objects.count() == 1


def test_unknown_integration_wrong_provider_or_method_writes_nothing(make_integration):
    stripe_integration = make_integration("stripe")
    body = b"{}"
    for path in (f"/api/webhooks/segment/{stripe_integration.pk}", "/api/webhooks/stripe/999999"):
        response = post(path, body)
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), path
        assert set(response.json()) == {"message", "code", "errors"}
    # Nothing but POST; Django's URL conf no longer has the route (the receiver answers it first).
    wrong_method = post(f"/api/webhooks/stripe/{stripe_integration.pk}", method="GET")
    assert (wrong_method.status_code, wrong_method.headers[b"Allow"]) == (405, b"POST")
    assert WebhookEvent.objects.count() == 0


def test_the_documented_answers_are_the_receivers(make_integration, settings):
    """The schema describes the route by hand (integrations.api.schema): each documented error
    status is one the receiver sends, in the error shape, and the 200 body is `{received}`."""
    operation = add_webhook_route({}, None, None, True)["paths"][PATH]["post"]
    assert set(operation["responses"]) == {"200", *ERRORS}
    integration = make_integration("segment")
    body = json.dumps({"messageId": "doc-1", "type": "track", "event": "X", "userId": "u"}).encode()
    signed = segment_headers(SEGMENT_SECRET, body)
    answers = {
        "200": deliver(integration, body, signed),
        "400": deliver(integration, b"[]", segment_headers(SEGMENT_SECRET, b"[]")),
        "401": deliver(integration, body, segment_headers("not-ours", body)),
        "404": post(f"/api/webhooks/segment/{integration.pk + 1000}", body, signed),
    }
    limit, settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.DATA_UPLOAD_MAX_MEMORY_SIZE, 10
    answers["413"] = deliver(integration, body, signed)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = limit
    settings.WEBHOOK_RECEIVE_TIMEOUT_SECONDS = 0  # no time to store: answered 503, never left hanging
    late = body.replace(b"doc-1", b"doc-2")
    answers["503"] = deliver(integration, late, segment_headers(SEGMENT_SECRET, late))
    assert {status: answer.status_code for status, answer in answers.items()} == {s: int(s) for s in answers}
    assert answers["200"].json() == {"received": 1}
    for status in ERRORS:
        assert set(answers[status].json()) == {"message", "code", "errors"}, status


# --- Dedupe and idempotent, order-free processing --------------------------------------------------------


def send_stripe(integration, event: dict):
    body = stripe_body(event)
    response = deliver(integration, body, {"HTTP_STRIPE_SIGNATURE": stripe_header(body.decode(), STRIPE_SECRET)})
    assert response.status_code == 200, response.content
    return response


def test_same_event_twice_is_stored_once_and_applied_once(make_integration):
    integration = make_integration("stripe")
    now = int(time.time())
    created = stripe_event("evt_c", "customer.created", stripe_customer(7, "seven@example.com"), now)
    failed = stripe_event(
        "evt_f",
        "invoice.payment_failed",
        {"id": "in_1", "object": "invoice", "customer": "cus_7", "amount_due": 12_000},
        now,
    )
    hold_drain(integration)
    for event in (created, failed, created, failed):
        send_stripe(integration, event)
    assert WebhookEvent.objects.count() == 2
    assert services.webhooks_drain(integration_id=integration.pk) == 2
    hold_drain(integration)
    for event in (created, failed):
        send_stripe(integration, event)
    assert WebhookEvent.objects.count() == 2
    assert services.webhooks_drain(integration_id=integration.pk) == 0
    customer = Customer.objects.get(email="seven@example.com")
    assert list(BillingEvent.objects.values_list("customer_id", "kind", "amount")) == [
        (customer.pk, "payment_failed", Decimal("120.00"))
    ]


def test_out_of_order_subscription_events_end_in_the_newest_state(make_integration):
    integration = make_integration("stripe")
    t = int(time.time()) - 100
    customer = stripe_event("evt_c", "customer.created", stripe_customer(1, "one@example.com"), t)
    v1 = stripe_event("evt_1", "customer.subscription.created", stripe_subscription(1, "cus_1", cents=10_000), t + 1)
    v2 = stripe_event(
        "evt_2",
        "customer.subscription.updated",
        stripe_subscription(1, "cus_1", cents=120_000, interval="year", quantity=2, nickname="Scale"),
        t + 2,
    )
    v3 = stripe_event(
        "evt_3",
        "customer.subscription.deleted",
        stripe_subscription(1, "cus_1", status="canceled", ended_at=t + 3),
        t + 3,
    )
    send_stripe(integration, customer)
    services.webhooks_drain(integration_id=integration.pk)
    for event in (v2, v3, v1):  # newest first: v1 must not resurrect the subscription
        send_stripe(integration, event)
        services.webhooks_drain(integration_id=integration.pk)
    c = Customer.objects.get(email="one@example.com")
    assert (c.mrr, c.is_active, c.churned_at) == (Decimal("0.00"), False, dt.datetime.fromtimestamp(t + 3, tz=dt.UTC))
    # The middle state, had it come last, would give 2 × $1,200 a year = $200 a month on plan Scale.
    WebhookEvent.objects.all().delete()
    ExternalRecord.objects.filter(kind="subscription").delete()
    for event in (v3, v1, v2):
        send_stripe(integration, {**event, "id": event["id"] + "b"})
    v2b = stripe_event("evt_2c", "customer.subscription.updated", v2["data"]["object"], t + 4)
    send_stripe(integration, v2b)
    services.webhooks_drain(integration_id=integration.pk)
    c.refresh_from_db()
    assert (c.mrr, c.plan, c.is_active, c.churned_at) == (Decimal("200.00"), "Scale", True, None)


def _fold(events: list[dict]) -> dict[str, dict]:
    """The expected final state: the newest version of every ticket, from the de-duplicated events."""
    state: dict[str, dict] = {}
    for event in sorted(events, key=lambda e: e["data"]["updatedAt"]):
        state[event["data"]["id"]] = event["data"]
    return state


def test_w2_a_thousand_deliveries_with_duplicates_shuffled(make_integration, make_customer):
    """W2 (T1): 1,000 deliveries, 20 % repeated, shuffled in windows of 50: 0 lost, 0 applied twice,
    and the final state equals the fold of the unique events sorted by version."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    integration = make_integration("generic")
    customers = [make_customer(email=f"w2-{i}@example.com") for i in range(20)]
    base = timezone.now() - dt.timedelta(hours=1)
    unique: list[tuple[str, dict]] = []
    for n in range(800):
        ticket = rng.randrange(120)
        data = {
            "id": f"t{ticket}",
            "customerEmail": customers[ticket % 20].email,
            "subject": f"Ticket {ticket} v{n}",
            "status": rng.choice(["open", "pending", "solved"]),
            "updatedAt": (base + dt.timedelta(seconds=n)).isoformat(),
        }
        unique.append((f"msg_{n}", {"type": "ticket.changed", "data": data}))
    deliveries = unique + rng.sample(unique, 200)
    windows = [deliveries[i : i + 50] for i in range(0, len(deliveries), 50)]
    rng.shuffle(windows)
    statuses = []
    for index, window in enumerate(windows):
        # A window's deliveries arrive at once, in random order, and share the receiver's commits.
        # Drained by the test as a worker would (in-process drains in the store threads would
        # hold each answer for the drain of the whole backlog).
        hold_drain(integration)
        signed = [
            (body, standard_headers(GENERIC_SECRET, msg_id, int(time.time()), body))
            for msg_id, body in (
                (msg_id, json.dumps(event).encode()) for msg_id, event in rng.sample(window, len(window))
            )
        ]
        statuses += [answer.status_code for answer in deliver_many(integration, signed)]
        if index % 2:
            services.webhooks_drain(integration_id=integration.pk)  # processing interleaves with delivery
    services.webhooks_drain(integration_id=integration.pk)
    assert set(statuses) == {200}, seed
    assert WebhookEvent.objects.count() == 800, seed
    assert WebhookEvent.objects.exclude(status="processed").count() == 0, seed
    expected = _fold([e for _, e in unique])
    tickets = {t.external_id.split(":", 1)[1]: t for t in SupportTicket.objects.all()}
    assert set(tickets) == set(expected), seed  # 0 lost, and one row per ticket: 0 applied twice
    for ticket_id, data in expected.items():
        assert (tickets[ticket_id].subject, tickets[ticket_id].status) == (data["subject"], data["status"]), seed
    open_counts = {c.pk: 0 for c in customers}
    for ticket_id, data in expected.items():
        if data["status"] in ("open", "pending"):
            open_counts[customers[int(ticket_id[1:]) % 20].pk] += 1
    assert dict(Customer.objects.filter(pk__in=open_counts).values_list("pk", "support_tickets")) == open_counts


# --- Segment, Zendesk and HubSpot processing ------------------------------------------------------------


def test_segment_events_build_sessions_last_login_and_feature_usage(make_integration, make_customer):
    integration = make_integration("segment")
    customer = make_customer(
        email="seg@example.com", last_login=timezone.now() - dt.timedelta(days=30), feature_usage={}
    )
    # Sessions group a user's activity per hour: keep all four events inside one hour.
    at = (timezone.now() - dt.timedelta(hours=1)).replace(minute=10, second=0, microsecond=0)
    events = [
        {
            "messageId": "m1",
            "type": "identify",
            "userId": "u1",
            "traits": {"email": "seg@example.com"},
            "timestamp": at.isoformat(),
        },
        {"messageId": "m2", "type": "page", "userId": "u1", "timestamp": (at + dt.timedelta(seconds=10)).isoformat()},
        {
            "messageId": "m3",
            "type": "track",
            "event": "Report Built",
            "userId": "u1",
            "timestamp": (at + dt.timedelta(seconds=20)).isoformat(),
        },
        {
            "messageId": "m4",
            "type": "track",
            "event": "Report Built",
            "userId": "u1",
            "timestamp": (at + dt.timedelta(seconds=30)).isoformat(),
        },
    ]
    for event in [*events, events[2]]:
        body = json.dumps(event).encode()
        assert deliver(integration, body, segment_headers(SEGMENT_SECRET, body)).status_code == 200
    services.webhooks_drain(integration_id=integration.pk)
    customer.refresh_from_db()
    assert customer.feature_usage == {"Report Built": 2}
    assert customer.last_login == at + dt.timedelta(seconds=30)
    session = UserSession.objects.get(customer=customer)
    assert (session.pages_viewed, len(session.actions), session.started_at) == (1, 2, at)


def test_zendesk_ticket_and_satisfaction_rating(make_integration, make_customer):
    integration = make_integration("zendesk")
    customer = make_customer(email="desk@example.com", support_tickets=0, nps_score=None)
    now = timezone.now()
    ticket = {
        "id": "zd-1",
        "type": "ticket.created",
        "ticket": {
            "id": 42,
            "subject": "Export broken",
            "status": "open",
            "priority": "urgent",
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "requester": {"email": "DESK@example.com"},
        },
    }
    rating = {
        "id": "zd-2",
        "type": "satisfaction_rating.created",
        "satisfaction_rating": {
            "id": 7,
            "score": "bad",
            "ticket_id": 42,
            "comment": "slow",
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
        },
    }
    for event in (ticket, rating):
        body = json.dumps(event).encode()
        stamp = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        assert deliver(integration, body, zendesk_headers(ZENDESK_SECRET, body, stamp)).status_code == 200
        services.webhooks_drain(integration_id=integration.pk)
    customer.refresh_from_db()
    assert (customer.support_tickets, customer.nps_score) == (1, 3)
    assert SupportTicket.objects.get().priority == "urgent"
    assert NpsResponse.objects.get().comment == "slow"


def test_hubspot_webhook_fetches_the_object_and_its_owner(make_integration, fake_api, make_user):
    owner = make_user("csm")
    owner.email = "owner@example.com"
    owner.save(update_fields=["email"])
    integration = make_integration("hubspot", api_base=fake_api.base_url)
    fake_api.routes[("GET", "/crm/v3/objects/companies/5")] = lambda *_: (
        200,
        {
            "id": "5",
            "properties": {"name": "Globex", "hubspot_owner_id": "77"},
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2025-01-01T00:00:00Z",
        },
        {},
    )
    fake_api.routes[("GET", "/crm/v3/objects/contacts/9")] = lambda *_: (
        200,
        {
            "id": "9",
            "properties": {"email": "hank@globex.example", "firstname": "Hank", "associatedcompanyid": "5"},
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2025-01-02T00:00:00Z",
        },
        {},
    )
    fake_api.routes[("GET", "/crm/v3/owners/77")] = lambda *_: (
        200,
        {"id": "77", "email": "owner@example.com", "updatedAt": "2024-06-01T00:00:00Z"},
        {},
    )
    fake_api.fail("/crm/v3/objects/companies/5", (429, {"status": "error"}, {"Retry-After": "0"}))
    body = json.dumps(
        [
            {"eventId": 1, "subscriptionType": "company.creation", "objectId": 5, "occurredAt": 1},
            {"eventId": 2, "subscriptionType": "contact.creation", "objectId": 9, "occurredAt": 2},
        ]
    ).encode()
    uri = f"http://testserver/api/webhooks/hubspot/{integration.pk}"
    hold_drain(integration)
    answer = deliver(integration, body, hubspot_headers(HUBSPOT_SECRET, "POST", uri, body, int(time.time() * 1000)))
    assert (answer.status_code, answer.json()) == (200, {"received": 2})
    assert WebhookEvent.objects.count() == 2
    services.webhooks_drain(integration_id=integration.pk)
    customer = Customer.objects.get()
    assert (customer.email, customer.company, customer.owner_id) == ("hank@globex.example", "Globex", owner.pk)
    assert ExternalRecord.objects.get(kind="customer", external_id="5").customer_id == customer.pk


# --- W4: dead letters and replay; C2: the outbox ---------------------------------------------------------


def test_poison_event_retries_with_growing_jittered_delays_then_dead_letters_and_replays(make_integration, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    integration = make_integration("stripe")
    now = int(time.time())
    # A payment for a customer we do not know (yet): transient, so retried, then dead.
    event = stripe_event(
        "evt_orphan",
        "invoice.payment_failed",
        {"id": "in_9", "object": "invoice", "customer": "cus_404", "amount_due": 500},
        now,
    )
    hold_drain(integration)  # the first attempt is the test's first drain
    send_stripe(integration, event)
    delays = []
    start = timezone.now()
    for attempt in range(1, 5):
        with time_machine.travel(start + dt.timedelta(hours=attempt), tick=False):
            services.webhooks_drain(integration_id=integration.pk)
            row = WebhookEvent.objects.get()
            assert row.attempts == attempt
            if attempt < 4:
                assert row.status == "retrying"
                delays.append((row.next_attempt_at - timezone.now()).total_seconds())
    assert row.status == "dead" and "UnresolvedCustomer" in row.last_error
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20 and 20 <= delays[2] <= 40  # base·2^(n-1)·[0.5, 1]
    alert = Alert.objects.get()
    assert "evt_orphan" in alert.message and alert.severity == "high"
    # Fixed upstream: the customer arrives; the admin replays the dead letter.
    send_stripe(
        integration, stripe_event("evt_c404", "customer.created", stripe_customer(404, "late@example.com"), now)
    )
    services.webhooks_drain(integration_id=integration.pk)
    assert services.webhook_events_replay(event_ids=[row.pk]) == 1
    services.webhooks_drain(integration_id=integration.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("processed", 1)
    assert BillingEvent.objects.get().customer.email == "late@example.com"


def test_a_bad_payload_is_dead_at_once(make_integration):
    integration = make_integration("generic")
    body = json.dumps(
        {
            "type": "nps.received",
            "data": {
                "id": "n1",
                "customerEmail": "x@example.com",
                "score": 42,
                "respondedAt": timezone.now().isoformat(),
            },
        }
    ).encode()
    deliver(integration, body, standard_headers(GENERIC_SECRET, "msg_bad", int(time.time()), body))
    services.webhooks_drain(integration_id=integration.pk)
    row = WebhookEvent.objects.get()
    assert (row.status, row.attempts) == ("dead", 1) and "score" in row.last_error


def test_c2_enqueue_lost_after_commit_is_recovered_by_the_sweeper(make_integration, make_customer):
    """The commit happens, the drain never runs (its window claimed, the message lost, as a crash
    would lose it): the beat sweeper finds the overdue rows and they are processed."""
    integration = make_integration("segment")
    customer = make_customer(email="c2@example.com", feature_usage={})
    hold_drain(integration)
    for n in range(20):
        body = json.dumps(
            {
                "messageId": f"c2-{n}",
                "type": "track",
                "event": "Saved",
                "userId": "u",
                "context": {"traits": {"email": "c2@example.com"}},
            }
        ).encode()
        assert deliver(integration, body, segment_headers(SEGMENT_SECRET, body)).status_code == 200
    # Every delivery answered 200 and durable, none processed: what a crash would lose.
    assert WebhookEvent.objects.filter(status="received").count() == 20
    customer.refresh_from_db()
    assert customer.feature_usage == {}
    assert services.webhooks_sweep() == []  # not overdue yet
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=2), tick=False):
        assert services.webhooks_sweep() == [integration.pk]  # eager in tests: the drain ran
    customer.refresh_from_db()
    assert customer.feature_usage == {"Saved": 20}
    assert WebhookEvent.objects.filter(status="processed").count() == 20


def test_failed_payment_is_published_after_commit(make_integration, manager, django_capture_on_commit_callbacks):
    seen: list[events.PaymentFailed] = []
    events.subscribe(events.PaymentFailed, seen.append)
    recovery, _ = playbook_upsert(
        name="Payment Recovery", data={"steps": [{"key": "w", "type": "wait", "duration": "1d"}]}
    )
    rule = TriggerRule.objects.create(playbook=recovery, kind="failed_payment", params={"days": 1})
    approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)  # rules enrol only after a go-ahead
    try:
        integration = make_integration("stripe")
        now = int(time.time())
        hold_drain(integration)  # applied by the drain below, on this thread
        send_stripe(integration, stripe_event("evt_c", "customer.created", stripe_customer(3, "p@example.com"), now))
        send_stripe(
            integration,
            stripe_event(
                "evt_f",
                "invoice.payment_failed",
                {"id": "in_3", "object": "invoice", "customer": "cus_3", "amount_due": 9_900},
                now,
            ),
        )
        with django_capture_on_commit_callbacks(execute=True):
            services.webhooks_drain(integration_id=integration.pk)
        customer = Customer.objects.get(email="p@example.com")
        assert [(p.customer_id, p.amount) for p in seen] == [(customer.pk, Decimal("99.00"))]
        # The same failure raised one alert for the customer's CSM and enrolled the customer in
        # the playbook whose rule answers failed payments (playbooks registers a handler too).
        alert = Alert.objects.get(source="payment_failed")
        assert alert.customer_id == customer.pk and alert.severity == "high"
        assert PlaybookExecution.objects.filter(playbook=recovery, customer=customer).exists()
    finally:
        events.unsubscribe(events.PaymentFailed, seen.append)


def test_segment_group_links_users_so_later_events_find_the_account(make_integration, make_customer):
    integration = make_integration("segment")
    customer = make_customer(email="acct@example.com", feature_usage={})
    at = timezone.now() - dt.timedelta(minutes=1)
    group = {
        "messageId": "g1",
        "type": "group",
        "userId": "user-9",
        "groupId": "acct-1",
        "traits": {"email": "ACCT@example.com", "name": "Acct"},
        "timestamp": at.isoformat(),
    }
    track = {
        "messageId": "t1",
        "type": "track",
        "event": "Invited",
        "userId": "user-9",
        "timestamp": (at + dt.timedelta(seconds=5)).isoformat(),
    }
    for event in (group, track):
        body = json.dumps(event).encode()
        assert deliver(integration, body, segment_headers(SEGMENT_SECRET, body)).status_code == 200
    # No drain pending: in-process tasks (embedded, tests) applied each delivery before its answer.
    assert services.webhooks_drain(integration_id=integration.pk) == 0
    customer.refresh_from_db()
    assert customer.feature_usage == {"Invited": 1}
    assert ExternalRecord.objects.get(kind="user", external_id="user-9").customer_id == customer.pk
    assert ExternalRecord.objects.get(kind="customer", external_id="acct-1").customer_id == customer.pk
    assert Customer.objects.count() == 1  # matched by e-mail, not created twice


@pytest.mark.django_db  # no delivery: the pipeline alone, inside the test's transaction
def test_a_failure_already_known_is_not_reported_again_when_the_customer_is_significant_otherwise(
    make_integration, make_customer, django_capture_on_commit_callbacks
):
    from customers.history.canonical import CustomerRef, PaymentRecorded, TicketChanged
    from integrations.pipeline import apply_events

    integration = make_integration("stripe")
    customer = make_customer(email="again@example.com")
    ref = CustomerRef(email="again@example.com")
    at = timezone.now() - dt.timedelta(hours=1)

    def failed(version: dt.datetime) -> PaymentRecorded:
        return PaymentRecorded("in_9", ref, version, succeeded=False, amount=Decimal("10"), occurred_at=at)

    seen: list[events.PaymentFailed] = []
    events.subscribe(events.PaymentFailed, seen.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            apply_events(integration_id=integration.pk, events=[failed(at)])
        assert [p.customer_id for p in seen] == [customer.pk]
        # A newer version of the same, still failed, invoice arrives with a newly opened ticket:
        # the ticket makes the customer significant, but the payment did not newly fail.
        ticket = TicketChanged("t-9", ref, at + dt.timedelta(minutes=5), subject="Help", status="open")
        with django_capture_on_commit_callbacks(execute=True):
            result = apply_events(integration_id=integration.pk, events=[failed(at + dt.timedelta(minutes=5)), ticket])
        assert customer.pk in result.significant
        assert len(seen) == 1 and result.payments_failed == []
    finally:
        events.unsubscribe(events.PaymentFailed, seen.append)
    assert BillingEvent.objects.filter(customer=customer, kind="payment_failed").count() == 1
    assert Alert.objects.filter(source="payment_failed", customer=customer).count() == 1
