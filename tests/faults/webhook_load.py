"""Signed webhook traffic for the soak (X6) and the chaos test (X4): the five provider schemes we
implement, duplicates, shuffling, fake providers that retry, and the expected final state.

Every unique event has a unique version (an epoch second of its own), so "the fold of the
de-duplicated events by source version" has exactly one answer. Signatures are computed here
the providers' way (Stripe with the official library, Standard Webhooks with its library, the
others from their documentation, as in integrations/tests/fakes.py), fresh for every attempt.
"""

import asyncio
import datetime as dt
import hashlib
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from integrations.tests.fakes import (
    FakeProvider,
    hubspot_headers,
    segment_headers,
    standard_headers,
    stripe_header,
    zendesk_headers,
)

SECRETS = {
    "stripe": "whsec_soak_stripe",
    "hubspot": "soak-hubspot-client-secret",
    "zendesk": "soak-zendesk-secret",
    "segment": "soak-segment-secret",
    "generic": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}
PROVIDERS = tuple(SECRETS)
# Customers 0..STRIPE_CUSTOMERS-1 are Stripe customers, the next HUBSPOT_CONTACTS HubSpot contacts.
STRIPE_CUSTOMERS = 150
HUBSPOT_CONTACTS = 100
ACTIONS = ("Report Built", "Export", "Invite Sent", "Dashboard Shared")
# A fake provider's retry schedule (Svix's, compressed): seconds before attempt 2, 3, …
RETRY_SCHEDULE = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8)


def email(i: int) -> str:
    return f"soak{i}@example.com"


@dataclass
class Event:
    """One unique provider event; `payload` is the body (HubSpot: one item of its list)."""

    provider: str
    event_id: str
    payload: Any
    kind: str  # what it does: customer, subscription, invoice, ticket, rating, nps, payment, track, contact
    key: str  # the object it versions (or the event itself for additive tracks)
    version: int  # epoch seconds
    customer: int  # index of the soak customer


def setup_code(customers: int, hubspot_base: str) -> str:
    """Run by `manage.py shell`: customers, a manager to watch the alert feed, one integration per
    provider. Prints `{provider: integration id}` as JSON."""
    configs = {
        "stripe": {"signing_secret": SECRETS["stripe"], "api_key": "sk_soak"},
        "hubspot": {"client_secret": SECRETS["hubspot"], "access_token": "pat-soak", "api_base": hubspot_base},
        "zendesk": {"signing_secret": SECRETS["zendesk"], "api_token": "t", "email": "ops@example.com"},
        "segment": {"signing_secret": SECRETS["segment"]},
        "generic": {"signing_secret": SECRETS["generic"]},
    }
    return f"""
import json
import datetime as dt
from django.utils import timezone
from importlib import import_module
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from alerts.models import Alert
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from integrations.models import ExternalRecord, Integration, WebhookEvent

for model in (WebhookEvent, ExternalRecord, Alert, BillingEvent, NpsResponse, SupportTicket, UserSession):
    model.objects.all().delete()
Integration.objects.all().delete()
Customer.objects.all().delete()
Customer.objects.bulk_create([
    Customer(email=f"soak{{i}}@example.com", name=f"Soak {{i}}", company=f"Soak {{i}} Inc", feature_usage={{}},
             signup_date=timezone.now() - dt.timedelta(days=400))
    for i in range({customers})
])
if not Group.objects.filter(name="manager").exists():
    import_module("customers.migrations.0002_roles").create_roles(apps, None)
User = get_user_model()
user = User.objects.filter(username="soak-manager").first() or User.objects.create_user(
    username="soak-manager", email="soak-manager@example.com", password="s3cret-pass-123", is_staff=True
)
user.groups.set([Group.objects.get(name="manager")])
ids = {{}}
for provider, config in {configs!r}.items():
    ids[provider] = Integration.objects.create(
        name=f"soak {{provider}}", type="other", status="connected", config={{"provider": provider, **config}}
    ).pk
print(json.dumps(ids))
"""


def generate(unique: int, customers: int, rng: random.Random, base: int) -> list[Event]:
    """`unique` events across the five providers; object-creating events come first (as in life)."""
    events: list[Event] = []
    n = 0

    def add(provider: str, event_id: str, payload: Any, kind: str, key: str, customer: int, version: int) -> None:
        events.append(Event(provider, event_id, payload, kind, key, version, customer))

    # Stripe customers first: their invoices and subscriptions name them by Stripe id.
    for i in range(STRIPE_CUSTOMERS):
        n += 1
        obj = {"id": f"cus_{i}", "object": "customer", "email": email(i), "name": f"Stripe {i}", "created": base}
        add(
            "stripe",
            f"evt_c{i}",
            _stripe_event(f"evt_c{i}", "customer.created", obj, base + n),
            "customer",
            f"cus_{i}",
            i,
            base + n,
        )
    tickets_seen: list[tuple[int, int, int]] = []  # (zendesk ticket, customer, position) already emitted
    weights = {"stripe": 24, "zendesk": 20, "generic": 20, "segment": 26, "hubspot": 10}
    choices = list(weights)
    while len(events) < unique:
        n += 1
        version = base + n
        provider = rng.choices(choices, [weights[p] for p in choices])[0]
        seq = len(events)
        if provider == "stripe":
            c = rng.randrange(STRIPE_CUSTOMERS)
            if rng.random() < 0.5:
                sub = rng.randrange(3 * STRIPE_CUSTOMERS)
                c = sub % STRIPE_CUSTOMERS
                status = rng.choice(["active", "active", "past_due", "trialing", "canceled"])
                cents = rng.choice([10_000, 25_000, 50_000, 120_000])
                obj = {
                    "id": f"sub_{sub}",
                    "object": "subscription",
                    "customer": f"cus_{c}",
                    "status": status,
                    "ended_at": version if status == "canceled" else None,
                    "items": {
                        "data": [
                            {
                                "quantity": 1,
                                "price": {
                                    "nickname": f"P{cents}",
                                    "unit_amount": cents,
                                    "recurring": {"interval": "month"},
                                },
                            }
                        ]
                    },
                }
                kind = "customer.subscription.deleted" if status == "canceled" else "customer.subscription.updated"
                add(
                    "stripe",
                    f"evt_{seq}",
                    _stripe_event(f"evt_{seq}", kind, obj, version),
                    "subscription",
                    f"sub_{sub}",
                    c,
                    version,
                )
            else:
                invoice = rng.randrange(4 * STRIPE_CUSTOMERS)
                c = invoice % STRIPE_CUSTOMERS
                paid = rng.random() < 0.7
                cents = 1_000 + invoice * 7
                obj = {
                    "id": f"in_{invoice}",
                    "object": "invoice",
                    "customer": f"cus_{c}",
                    "amount_due": cents,
                    "amount_paid": cents if paid else 0,
                }
                kind = "invoice.paid" if paid else "invoice.payment_failed"
                add(
                    "stripe",
                    f"evt_{seq}",
                    _stripe_event(f"evt_{seq}", kind, obj, version),
                    "invoice",
                    f"in_{invoice}",
                    c,
                    version,
                )
        elif provider == "zendesk":
            # A rating names its ticket: only for tickets sent well before (a rating that still
            # overtakes its ticket is retried until the ticket is applied).
            rateable = [t for t in tickets_seen if t[2] < len(events) - 150]
            if rateable and rng.random() < 0.2:
                ticket, c, _ = rng.choice(rateable)
                rating = ticket  # one rating per ticket, re-rated over time
                payload = {
                    "id": f"zd-{seq}",
                    "type": "satisfaction_rating.updated",
                    "satisfaction_rating": {
                        "id": rating,
                        "ticket_id": ticket,
                        "score": rng.choice(["good", "bad"]),
                        "comment": f"r{seq}",
                        "created_at": _iso(base),
                        "updated_at": _iso(version),
                    },
                }
                add("zendesk", f"zd-{seq}", payload, "rating", f"csat:{rating}", c, version)
            else:
                ticket = 1000 + rng.randrange(600)
                c = ticket % customers
                payload = {
                    "id": f"zd-{seq}",
                    "type": "ticket.updated",
                    "ticket": {
                        "id": ticket,
                        "subject": f"Zendesk ticket {ticket} v{seq}",
                        "status": rng.choice(["new", "open", "pending", "hold", "solved"]),
                        "priority": rng.choice(["low", "normal", "high", "urgent"]),
                        "created_at": _iso(base),
                        "updated_at": _iso(version),
                        "requester": {"email": email(c)},
                    },
                }
                add("zendesk", f"zd-{seq}", payload, "ticket", str(ticket), c, version)
                tickets_seen.append((ticket, c, len(events)))
        elif provider == "generic":
            c = rng.randrange(customers)
            roll = rng.random()
            if roll < 0.5:
                ticket = rng.randrange(500)
                c = ticket % customers
                data = {
                    "id": f"gt{ticket}",
                    "customerEmail": email(c),
                    "subject": f"Generic ticket {ticket} v{seq}",
                    "status": rng.choice(["open", "pending", "solved", "closed"]),
                    "updatedAt": _iso(version),
                }
                add(
                    "generic",
                    f"msg_{seq}",
                    {"type": "ticket.changed", "data": data},
                    "ticket",
                    f"gt{ticket}",
                    c,
                    version,
                )
            elif roll < 0.75:
                answer = rng.randrange(300)
                c = answer % customers
                data = {
                    "id": f"gn{answer}",
                    "customerEmail": email(c),
                    "score": rng.randrange(11),
                    "comment": f"n{seq}",
                    "respondedAt": _iso(version),
                }
                add("generic", f"msg_{seq}", {"type": "nps.received", "data": data}, "nps", f"gn{answer}", c, version)
            else:
                payment = rng.randrange(300)
                c = payment % customers
                data = {
                    "id": f"gp{payment}",
                    "customerEmail": email(c),
                    "succeeded": rng.random() < 0.7,
                    "amount": f"{10 + payment}.50",
                    "occurredAt": _iso(version),
                }
                add(
                    "generic",
                    f"msg_{seq}",
                    {"type": "payment.recorded", "data": data},
                    "payment",
                    f"gp{payment}",
                    c,
                    version,
                )
        elif provider == "segment":
            c = rng.randrange(customers)
            at = dt.datetime.fromtimestamp(version, tz=dt.UTC)
            payload = {
                "messageId": f"seg-{seq}",
                "type": "track",
                "event": rng.choice(ACTIONS),
                "userId": f"u{c}",
                "timestamp": at.isoformat(),
                "context": {"traits": {"email": email(c)}},
            }
            add("segment", f"seg-{seq}", payload, "track", f"seg-{seq}", c, version)
        else:
            contact = rng.randrange(HUBSPOT_CONTACTS)
            item = {
                "eventId": 900_000 + seq,
                "subscriptionType": "contact.propertyChange",
                "objectId": contact,
                "occurredAt": version * 1000,
            }
            add("hubspot", str(900_000 + seq), item, "contact", str(contact), STRIPE_CUSTOMERS + contact, version)
    return events


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat()


def _stripe_event(event_id: str, event_type: str, obj: dict, created: int) -> dict:
    return {"id": event_id, "object": "event", "type": event_type, "created": created, "data": {"object": obj}}


def hubspot_api(customers_offset: int = STRIPE_CUSTOMERS) -> FakeProvider:
    """Loopback HubSpot: every contact's current state (its name and e-mail never change here)."""
    fake = FakeProvider()

    def contact(path: str, query: dict, body: Any) -> tuple[int, Any, dict]:
        k = int(path.rsplit("/", 1)[1])
        return (
            200,
            {
                "id": str(k),
                "properties": {"email": email(customers_offset + k), "firstname": "Hub", "lastname": str(k)},
                "createdAt": "2024-01-01T00:00:00Z",
                "updatedAt": "2025-01-01T00:00:00Z",
            },
            {},
        )

    fake.routes[("GET", "/crm/v3/objects/contacts/*")] = contact
    return fake


# --- Deliveries -------------------------------------------------------------------------------------


@dataclass
class Delivery:
    event: Event
    concurrent_copies: int = 1  # 2: the same delivery sent twice at once


def schedule(events: list[Event], total: int, rng: random.Random, concurrent_share: float = 0.05) -> list[Delivery]:
    """`total` deliveries: every event once, the rest duplicates (some at the same moment, the
    others re-sent later), the stream shuffled inside windows of 50."""
    extra = total - len(events)
    concurrent = min(int(total * concurrent_share / 2), extra)  # each concurrent pair counts two deliveries
    stream = [Delivery(e) for e in events]
    for index in rng.sample(range(len(events)), concurrent):
        stream[index] = Delivery(events[index], 2)
    # Re-sent later: inserted back to front, so an earlier insert never shifts a later position.
    later = sorted(
        ((rng.randrange(len(events)), rng.randrange(1, 400)) for _ in range(extra - concurrent)), reverse=True
    )
    for index, delay in later:
        stream.insert(min(len(stream), index + delay), Delivery(events[index]))
    shuffled: list[Delivery] = []
    for start in range(0, len(stream), 50):
        window = stream[start : start + 50]
        rng.shuffle(window)
        shuffled.extend(window)
    return shuffled


def signed(event: Event, base_url: str, integration_id: int) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers for one attempt, signed now."""
    provider = event.provider
    url = f"{base_url}/api/webhooks/{provider}/{integration_id}"
    secret = SECRETS[provider]
    if provider == "hubspot":
        body = json.dumps([event.payload]).encode()
        raw = hubspot_headers(secret, "POST", url, body, int(time.time() * 1000))
    else:
        body = json.dumps(event.payload).encode()
        now = int(time.time())
        raw = {
            "stripe": lambda: {"HTTP_STRIPE_SIGNATURE": stripe_header(body.decode(), secret, now)},
            "zendesk": lambda: zendesk_headers(secret, body, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
            "segment": lambda: segment_headers(secret, body),
            "generic": lambda: standard_headers(secret, event.event_id, now, body),
        }[provider]()
    headers = {name[5:].replace("_", "-").lower(): value for name, value in raw.items()}
    headers["content-type"] = "application/json"
    return url, body, headers


@dataclass
class Attempt:
    started: float  # monotonic
    latency: float
    status: int  # 0: transport error or timeout
    error: str = ""  # the transport error's class, when status is 0


@dataclass
class SendReport:
    attempts: list[Attempt] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    requests: int = 0
    first_send: float = 0.0
    last_accept: float = 0.0

    def accepted_latencies(self) -> list[float]:
        return sorted(a.latency for a in self.attempts if 200 <= a.status < 300)

    def p99(self) -> float:
        latencies = self.accepted_latencies()
        return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0

    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if not 200 <= a.status < 300]


async def send_all(
    deliveries: list[Delivery],
    base_url: str,
    integration_ids: dict[str, int],
    *,
    clients: int = 32,
    timeout: float = 10.0,
    give_up_after: float = 120.0,
    progress: list[int] | None = None,
    rate: float | None = None,
) -> SendReport:
    """Post every delivery from `clients` concurrent senders; each retries any non-2xx or transport
    error on RETRY_SCHEDULE (re-signed each time) until accepted or `give_up_after` seconds.
    With `rate`, delivery i is started no earlier than i / rate seconds after the first."""
    report = SendReport(first_send=time.monotonic())
    queue: asyncio.Queue[tuple[int, Delivery]] = asyncio.Queue()
    for item in enumerate(deliveries):
        queue.put_nowait(item)
    # An idle pooled connection is dropped before uvicorn's 5 s keep-alive timeout closes it: with
    # equal timeouts a request can go out on a connection the server is closing at that instant,
    # a transport error no server could prevent (real senders retry it; here it would be counted
    # as a failure outside the fault windows).
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2, keepalive_expiry=2.0)

    async def deliver(client: httpx.AsyncClient, event: Event) -> None:
        started_at = time.monotonic()
        for attempt in range(len(RETRY_SCHEDULE) + 1):
            url, body, headers = signed(event, base_url, integration_ids[event.provider])
            began = time.monotonic()
            error = ""
            try:
                response = await client.post(url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status, error = 0, f"{type(exc).__name__}: {exc}"
            report.requests += 1
            report.attempts.append(Attempt(began, time.monotonic() - began, status, error))
            if 200 <= status < 300:
                report.last_accept = max(report.last_accept, time.monotonic())
                return
            if attempt == len(RETRY_SCHEDULE) or time.monotonic() - started_at > give_up_after:
                break
            await asyncio.sleep(RETRY_SCHEDULE[attempt])
        report.gave_up.append(event.event_id)

    async def sender(client: httpx.AsyncClient) -> None:
        while True:
            try:
                index, delivery = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if rate:
                await asyncio.sleep(max(0.0, report.first_send + index / rate - time.monotonic()))
            await asyncio.gather(*(deliver(client, delivery.event) for _ in range(delivery.concurrent_copies)))
            if progress is not None:
                progress[0] += delivery.concurrent_copies

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(sender(client) for _ in range(clients)))
    return report


# --- The expected state (the fold) and the observed one ------------------------------------------------------


def fold(events: list[Event]) -> dict[tuple[str, str], Event]:
    """The newest version of every versioned object, from the de-duplicated events."""
    newest: dict[tuple[str, str], Event] = {}
    for event in sorted(events, key=lambda e: e.version):
        if event.kind != "track":
            newest[(event.provider, event.key)] = event
    return newest


STRIPE_LIVE = {"active", "trialing", "past_due", "unpaid"}


def expected_state(events: list[Event], integration_ids: dict[str, int]) -> dict[str, Any]:
    newest = fold(events)
    tickets, nps, payments = {}, {}, {}
    mrr: dict[int, Decimal] = defaultdict(Decimal)
    subscribed: set[int] = set()
    for (provider, key), e in newest.items():
        prefix = f"{integration_ids[provider]}:{key}"
        if e.kind == "ticket" and provider == "zendesk":
            t = e.payload["ticket"]
            status = {"new": "open", "open": "open", "pending": "pending", "hold": "pending", "solved": "solved"}[
                t["status"]
            ]
            tickets[prefix] = (t["subject"], status, e.customer)
        elif e.kind == "ticket":
            tickets[prefix] = (e.payload["data"]["subject"], e.payload["data"]["status"], e.customer)
        elif e.kind == "rating":
            r = e.payload["satisfaction_rating"]
            nps[prefix] = ({"good": 9, "bad": 3}[r["score"]], r["comment"], e.customer)
        elif e.kind == "nps":
            nps[prefix] = (e.payload["data"]["score"], e.payload["data"]["comment"], e.customer)
        elif e.kind == "invoice":
            obj = e.payload["data"]["object"]
            paid = e.payload["type"] == "invoice.paid"
            payments[prefix] = (
                "payment_succeeded" if paid else "payment_failed",
                Decimal(obj["amount_due"]) / 100,
                e.customer,
            )
        elif e.kind == "payment":
            data = e.payload["data"]
            payments[prefix] = (
                "payment_succeeded" if data["succeeded"] else "payment_failed",
                Decimal(data["amount"]),
                e.customer,
            )
        elif e.kind == "subscription":
            obj = e.payload["data"]["object"]
            subscribed.add(e.customer)
            if obj["status"] in STRIPE_LIVE and e.payload["type"] != "customer.subscription.deleted":
                mrr[e.customer] += Decimal(obj["items"]["data"][0]["price"]["unit_amount"]) / 100
    tracks: dict[int, Counter] = defaultdict(Counter)
    actions: dict[int, Counter] = defaultdict(Counter)
    for e in events:
        if e.kind == "track":
            tracks[e.customer][(_iso(e.version), e.payload["event"])] += 1
            actions[e.customer][e.payload["event"]] += 1
    # The open-ticket count per customer follows from the final tickets.
    open_tickets: Counter = Counter(c for _, status, c in tickets.values() if status in ("open", "pending"))
    return {
        "tickets": tickets,
        "nps": nps,
        "payments": payments,
        "mrr": {c: mrr[c].quantize(Decimal("0.01")) for c in subscribed},
        "tracks": tracks,
        "usage": actions,
        "open_tickets": open_tickets,
        "versions": {
            (integration_ids[p], _record_kind(e.kind), e.key): e.version
            for (p, _), e in newest.items()
            if e.kind not in ("customer", "contact")  # a customer's version is Stripe's; a contact's HubSpot's
        },
        "contacts": {e.key for e in events if e.kind == "contact"},
    }


def _record_kind(kind: str) -> str:
    return {"rating": "nps", "invoice": "payment", "contact": "contact"}.get(kind, kind)


def observed_state(pg, customer_ids: dict[int, int]) -> dict[str, Any]:
    """The same shape, read from the database (`customer_ids`: database id → soak index)."""
    tickets = {
        ext: (subject, status, customer_ids[c])
        for ext, subject, status, c in pg.execute(
            "SELECT external_id, subject, status, customer_id FROM support_tickets"
        )
    }
    nps = {
        ext: (score, comment, customer_ids[c])
        for ext, score, comment, c in pg.execute("SELECT external_id, score, comment, customer_id FROM nps_responses")
    }
    payments = {
        ext: (kind, amount, customer_ids[c])
        for ext, kind, amount, c in pg.execute(
            "SELECT external_id, kind, amount, customer_id FROM billing_events"
            " WHERE kind IN ('payment_succeeded', 'payment_failed')"
        )
    }
    tracks: dict[int, Counter] = defaultdict(Counter)
    for c, actions in pg.execute("SELECT customer_id, actions FROM user_sessions"):
        for action in actions:
            tracks[customer_ids[c]][(dt.datetime.fromisoformat(action["at"]).isoformat(), action["action"])] += 1
    rows = pg.execute("SELECT id, mrr, feature_usage, support_tickets FROM customers")
    versions = {
        (integration, kind, ext): int(version.timestamp())
        for integration, kind, ext, version in pg.execute(
            "SELECT integration_id, kind, external_id, version FROM integration_external_records"
            " WHERE kind NOT IN ('session', 'user', 'customer')"
        )
    }
    return {
        "tickets": tickets,
        "nps": nps,
        "payments": payments,
        "mrr": {customer_ids[pk]: mrr for pk, mrr, _, _ in rows},
        "tracks": tracks,
        "usage": {customer_ids[pk]: Counter(usage or {}) for pk, _, usage, _ in rows},
        "open_tickets": Counter({customer_ids[pk]: n for pk, _, _, n in rows if n}),
        "versions": versions,
    }


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def lost_effects(expected: dict, observed: dict, pg, integration_ids: dict[str, int]) -> list[str]:
    """Unique events whose effect is missing: an object never written, a Segment action absent,
    a HubSpot contact never fetched and applied."""
    lost = [key for key in expected["tickets"] if key not in observed["tickets"]]
    lost += [key for key in expected["nps"] if key not in observed["nps"]]
    lost += [key for key in expected["payments"] if key not in observed["payments"]]
    lost += [key for key in expected["versions"] if key not in observed["versions"]]
    for customer, tracks in expected["tracks"].items():
        missing = tracks - observed["tracks"].get(customer, Counter())
        lost += [f"track {customer} {key}" for key in missing]
    contacts = {
        ext
        for (ext,) in pg.execute(
            "SELECT external_id FROM integration_external_records WHERE integration_id = %s AND kind = 'contact'",
            (integration_ids["hubspot"],),
        )
    }
    lost += [f"contact {k}" for k in expected["contacts"] - contacts]
    names = dict(pg.execute("SELECT email, name FROM customers"))
    lost += [
        f"contact name {k}"
        for k in expected["contacts"]
        if names[f"soak{STRIPE_CUSTOMERS + int(k)}@example.com"] != f"Hub {k}"
    ]
    return lost


def double_effects(expected: dict, observed: dict, pg, customers: int) -> list[str]:
    """Effects applied more than once: additive Segment actions counted twice, rows beyond one
    per outside object, customers created again."""
    double = []
    for customer, tracks in observed["tracks"].items():
        extra = tracks - expected["tracks"].get(customer, Counter())
        double += [f"track {customer} {key}" for key in extra]
    for customer, usage in observed["usage"].items():
        if usage != expected["usage"].get(customer, Counter()):
            double.append(f"usage {customer}: {dict(usage)} != {dict(expected['usage'].get(customer, {}))}")
    counts = dict(
        pg.execute(
            "SELECT 'tickets', count(*) FROM support_tickets UNION ALL SELECT 'nps', count(*) FROM nps_responses"
            " UNION ALL SELECT 'payments', count(*) FROM billing_events"
            " WHERE kind IN ('payment_succeeded', 'payment_failed')"
            " UNION ALL SELECT 'customers', count(*) FROM customers"
        )
    )
    for name in ("tickets", "nps", "payments"):
        if counts[name] != len(expected[name]):
            double.append(f"{name}: {counts[name]} rows for {len(expected[name])} objects")
    if counts["customers"] != customers:
        double.append(f"customers: {counts['customers']} (created again)")
    history = pg.execute(
        "SELECT external_id FROM billing_events WHERE kind LIKE 'subscription%%'"
        " GROUP BY external_id HAVING count(*) > 1"
    )
    double += [f"subscription version {row[0]}" for row in history]
    return double
