"""Applying canonical events to the customers' tables: the data sync's one writer, idempotent and
in bulk.

Pull pages and webhook batches (`integrations`) both land here. Every outside object has a
record in the source's `Ledger` (for an integration: its `ExternalRecord` rows, unique per
integration, kind and external id) holding the local row it became and the version last
applied; an event not newer than that version changes nothing, so duplicates and out-of-order
deliveries converge on the state of the newest version of each object. Customers' derived fields
(open tickets, latest NPS, MRR, plan, churn, last login, feature usage) are then recomputed for
the touched customers only, in a few set-based statements (one read of what exists, one bulk
write per table), never per-row queries.

Customers are matched by the source's record of them, the account a contact belongs to, then by
e-mail through `customers_by_email`. New customers are created by `customers_upsert`, the one
upsert the CSV and history imports also write through; profile changes are written with the
derived fields, once per batch, by the same `customers_update`.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Model, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from core.db import values_update
from core.events import PaymentFailed
from customers.contracts import SubscriptionState, customer_contracts_refresh, subscription_states_record
from customers.history.canonical import (
    LIVE_SUBSCRIPTION_STATES,
    ActivitySeen,
    CanonicalEvent,
    CustomerRef,
    CustomerUpserted,
    NpsReceived,
    OwnerSeen,
    PaymentRecorded,
    SubscriptionChanged,
    TicketChanged,
    UserLinked,
)
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession


def _by_email(emails: Iterable[str]) -> QuerySet[Customer]:
    keys = {email.lower() for email in emails if email}
    return Customer.objects.annotate(email_key=Lower("email")).filter(email_key__in=keys)  # type: ignore[misc]


def customers_by_email(*, emails: Iterable[str], lock: bool = False) -> dict[str, Customer]:
    """The customers whose e-mail, whatever its case, is one of `emails`, by lower-cased e-mail.

    The one rule every writer matches a customer by e-mail with (the data sync, the CSV import,
    the history import). `lock`: rows locked in id order, so two writers of the same customers
    queue instead of overwriting each other's columns with what they read before.
    """
    emails = list(emails)
    if not emails:
        return {}
    rows = _by_email(emails)
    if lock:
        rows = rows.select_for_update().order_by("id")
    return {customer.email_key: customer for customer in rows}  # type: ignore[attr-defined]


def customer_ids_by_email(*, emails: Iterable[str]) -> dict[str, int]:
    """`customers_by_email` reading only the ids."""
    emails = list(emails)
    return dict(_by_email(emails).values_list("email_key", "id")) if emails else {}


@dataclass(eq=False)
class CustomerRow:
    """What one row of outside data (a sync event, a CSV or history file row) says of a customer.

    `customer` is the stored customer it names: the caller's own match (a source's record, an
    external id), else the one its `email` names, whatever its case (`customers_match`). A matched
    row sets `values` on its customer; an unmatched one creates a customer from `email`, `new` and
    `values`, one per e-mail (the first row of an e-mail gives its fields).
    """

    email: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    new: dict[str, Any] = field(default_factory=dict)
    customer: Customer | None = None
    matched: bool = False  # matched already: `customers_upsert` reads nothing more for it
    created: bool = False


def customers_match(*, rows: Iterable[CustomerRow], lock: bool = False) -> None:
    """Match each row not yet matched to the customer its e-mail names (`customers_by_email`)."""
    pending = [row for row in rows if not row.matched and row.customer is None]
    found = customers_by_email(emails=[row.email for row in pending if row.email], lock=lock)
    for row in pending:
        row.customer = found.get(row.email.lower()) if row.email else None
    for row in rows:
        row.matched = True


@dataclass
class Upserted:
    created: list[Customer] = field(default_factory=list)
    updated: list[Customer] = field(default_factory=list)  # matched, and some value differed
    unchanged: list[Customer] = field(default_factory=list)  # matched, every value as stored


def customers_upsert(*, rows: Sequence[CustomerRow], now: dt.datetime) -> Upserted:
    """The one write of customers from outside data: the data sync, the CSV import and the history
    import all create and update customers here.

    Rows not yet matched are matched by e-mail first. New customers are inserted in one order, by
    lower-cased e-mail, for every writer: two writers of the same new e-mails then wait on the first
    shared one instead of each holding one the other needs. Matched customers whose rows change a
    value get them in one set-based statement (`customers_update`); the others are not rewritten.
    `values` name model attributes (`owner_id`, not `owner`), compared with the stored ones as is.
    """
    customers_match(rows=rows)
    creating: dict[str, Customer] = {}
    matched: dict[int, Customer] = {}
    changed: dict[int, Customer] = {}
    fields: set[str] = set()
    for row in rows:
        if row.customer is not None and not row.created:
            customer = matched.setdefault(row.customer.pk, row.customer)
            for name, value in row.values.items():
                if getattr(customer, name) != value:
                    setattr(customer, name, value)
                    fields.add(name)
                    changed[customer.pk] = customer
            row.customer = customer
            continue
        key = row.email.lower()
        if key not in creating:
            creating[key] = Customer(**{"email": row.email, **row.new, **row.values})
        row.customer, row.created = creating[key], True
    created = [creating[key] for key in sorted(creating)]
    Customer.objects.bulk_create(created, batch_size=1000)
    customers_update(customers=list(changed.values()), fields=fields, now=now)
    return Upserted(
        created=created,
        updated=list(changed.values()),
        unchanged=[c for pk, c in matched.items() if pk not in changed],
    )


def customers_update(*, customers: Sequence[Customer], fields: Iterable[str], now: dt.datetime) -> None:
    """Write `fields` (and `updated_at`) of these customers in one set-based statement."""
    if not customers:
        return
    for customer in customers:
        customer.updated_at = now
    values_update(Customer, sorted(customers, key=lambda c: c.pk), sorted({*fields, "updated_at"}))


class Record(Protocol):
    """What a source remembers of one outside object: the local row it became (`local_id`), its
    customer, the version last applied, and applied state (`data`)."""

    kind: str
    external_id: str
    version: dt.datetime
    local_id: int | None
    customer_id: int | None
    data: Any


class Ledger(Protocol):
    """A source's records of the outside objects it has applied (integrations: `ExternalRecord`)."""

    def records(self, kind: str | Iterable[str], external_ids: Iterable[str]) -> dict[tuple[str, str], Record]:
        """The stored records of these objects, by (kind, external id)."""
        ...

    def keep(self, kind: str, external_id: str, version: dt.datetime, existing: Record | None, **values: Any) -> Record:
        """Record that this version of the object was applied (new or changed; written at `flush`)."""
        ...

    def pending(self, kind: str) -> list[Record]:
        """Records of `kind` kept since the last `flush`."""
        ...

    def flush(self) -> None:
        """Write the kept records."""
        ...

    def subscriptions(self, customer_ids: Iterable[int]) -> list[tuple[int, dict]]:
        """(customer id, applied state) of every subscription record of these customers."""
        ...


# A login after this long a silence is a significant event (re-score the customer).
LONG_GAP = dt.timedelta(days=14)
CUSTOMER_KINDS = ("customer", "contact")


class UnresolvedCustomer(ValueError):
    """A fact names a customer we cannot find (yet): retried, then dead-lettered."""


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    significant: set[int] = field(default_factory=set)
    payments_failed: list[PaymentFailed] = field(default_factory=list)


@dataclass
class _Batch:
    source_id: int  # the integration: prefixes the external ids of the rows it writes
    ledger: Ledger
    result: ApplyResult
    now: dt.datetime
    # customer id -> field -> value, written in one bulk update at the end
    customer_changes: dict[int, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    recount_tickets: set[int] = field(default_factory=set)
    recount_nps: set[int] = field(default_factory=set)
    recount_billing: set[int] = field(default_factory=set)
    recount_contracts: set[int] = field(default_factory=set)

    def records(self, kind: str | Iterable[str], external_ids: Iterable[str]) -> dict[tuple[str, str], Record]:
        return self.ledger.records(kind, external_ids)

    def keep(self, kind: str, external_id: str, version: dt.datetime, existing: Record | None, **values: Any) -> Record:
        return self.ledger.keep(kind, external_id, version, existing, **values)

    def flush_records(self) -> None:
        self.ledger.flush()


def _newest[E](events: list[E], key: Callable[[E], Any]) -> list[E]:
    """The newest version of each object in the batch (the first of equal versions)."""
    best: dict[Any, E] = {}
    for event in events:
        k = key(event)
        if k not in best or event.version > best[k].version:  # type: ignore[attr-defined]
            best[k] = event
    return list(best.values())


def _is_fresh(event: Any, record: Record | None) -> bool:
    return record is None or event.version > record.version


@transaction.atomic
def canonical_events_apply(*, source_id: int, ledger: Ledger, events: list[CanonicalEvent]) -> ApplyResult:
    """Apply a batch of one source's canonical events; all or nothing (a failure raises and writes
    nothing).

    The caller serialises applies of one source (two workers must not race to create the same
    record), reacts to the result after commit (`significant`: customers to re-score;
    `payments_failed`: to alert on and publish) and writes the ledger's records with the batch.
    """
    batch = _Batch(source_id=source_id, ledger=ledger, result=ApplyResult(), now=timezone.now())
    by_type: dict[type, list] = defaultdict(list)
    for event in events:
        by_type[type(event)].append(event)
    _apply_owners(batch, by_type[OwnerSeen])
    # Accounts before the contacts that may name them (a contact can complete a waiting account).
    upserts = by_type[CustomerUpserted]
    _apply_customers(batch, [e for e in upserts if not e.account_external_id])
    batch.flush_records()
    _apply_customers(batch, [e for e in upserts if e.account_external_id])
    batch.flush_records()
    facts = [
        event
        for kind in (UserLinked, ActivitySeen, TicketChanged, NpsReceived, PaymentRecorded, SubscriptionChanged)
        for event in by_type[kind]
    ]
    customers = _resolve(batch, [event.customer for event in facts])

    def customer_of(event: Any) -> int:
        customer_id = customers.get(event.customer)
        if customer_id is None:
            raise UnresolvedCustomer(f"No customer matches {event.customer} (yet).")
        return customer_id

    _apply_user_links(batch, by_type[UserLinked], customer_of)
    batch.flush_records()
    # Activity resolves users linked in this very batch.
    customers.update(_resolve(batch, [e.customer for e in by_type[ActivitySeen] if e.customer not in customers]))
    _apply_activity(batch, by_type[ActivitySeen], customer_of)
    _apply_tickets(batch, by_type[TicketChanged], customer_of)
    _apply_nps(batch, by_type[NpsReceived], customer_of)
    _apply_payments(batch, by_type[PaymentRecorded], customer_of)
    _apply_subscriptions(batch, by_type[SubscriptionChanged], customer_of)
    batch.flush_records()
    _lock_customers(batch)
    _recount(batch)
    _write_customers(batch)
    customer_contracts_refresh(customer_ids=batch.recount_contracts, now=batch.now)
    return batch.result


def _lock_customers(batch: _Batch) -> None:
    """Lock the customers whose derived fields this batch rewrites, in id order, before reading
    what they are derived from.

    Applies of different integrations run concurrently (the integration lock serialises one
    integration only). Without this, two batches touching one customer's tickets (Zendesk and a
    generic source) each counted under READ COMMITTED without the other's uncommitted rows, and
    the last to commit wrote a stale count (found by the webhook soak under worker kills). Once the lock is granted, the
    recount's statements see the other batch's committed rows.
    """
    ids = set(batch.customer_changes) | batch.recount_tickets | batch.recount_nps | batch.recount_billing
    if ids:
        list(Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))


def _resolve(batch: _Batch, refs: Iterable[CustomerRef]) -> dict[CustomerRef, int]:
    """Customer id of every ref we can resolve: by the account's id, the user's link, then e-mail."""
    refs = set(refs)
    found: dict[CustomerRef, int] = {}
    by_account = batch.records(CUSTOMER_KINDS, {r.external_id for r in refs if r.external_id})
    account_ids = {ext: rec.customer_id for (_, ext), rec in by_account.items() if rec.customer_id}
    by_user = batch.records("user", {r.user_id for r in refs if r.user_id})
    user_ids = {ext: rec.customer_id for (_, ext), rec in by_user.items() if rec.customer_id}
    by_ticket = batch.records("ticket", {r.ticket_external_id for r in refs if r.ticket_external_id})
    ticket_ids = {ext: rec.customer_id for (_, ext), rec in by_ticket.items() if rec.customer_id}
    email_ids = customer_ids_by_email(emails=[r.email for r in refs if r.email])
    for ref in refs:
        customer_id = (
            account_ids.get(ref.external_id or "")
            or user_ids.get(ref.user_id or "")
            or email_ids.get((ref.email or "").lower())
            or ticket_ids.get(ref.ticket_external_id or "")
        )
        if customer_id:
            found[ref] = customer_id
    return found


def _apply_owners(batch: _Batch, events: list[OwnerSeen]) -> None:
    events = _newest(events, lambda e: e.external_id)
    existing = batch.records("owner", [e.external_id for e in events])
    for event in events:
        record = existing.get(("owner", event.external_id))
        if _is_fresh(event, record):
            batch.keep("owner", event.external_id, event.version, record, data={"email": event.email})


def _owner_users(batch: _Batch, events: list[CustomerUpserted]) -> dict[str, int]:
    """Our user id for every owner e-mail or CRM owner id the events name."""
    owner_records = batch.records("owner", {e.owner_external_id for e in events if e.owner_external_id})
    pending = {r.external_id: r.data.get("email", "") for r in batch.ledger.pending("owner")}
    emails_by_owner = {ext: rec.data.get("email", "") for (_, ext), rec in owner_records.items()} | pending
    emails = {e.owner_email.lower() for e in events if e.owner_email} | {
        v.lower() for v in emails_by_owner.values() if v
    }
    if not emails:
        return {}
    users = dict(
        get_user_model()
        .objects.annotate(key=Lower("email"))
        .filter(key__in=emails, is_active=True)
        .values_list("key", "id")
    )
    resolved = {f"email:{k}": v for k, v in users.items()}
    for ext, email in emails_by_owner.items():
        if email and email.lower() in users:
            resolved[f"id:{ext}"] = users[email.lower()]
    return resolved


PROFILE_FIELDS = ("name", "company", "plan", "signup_date")


def _apply_customers(batch: _Batch, events: list[CustomerUpserted]) -> None:
    events = _newest(events, lambda e: (e.kind, e.external_id))
    existing = batch.records({e.kind for e in events} or "customer", [e.external_id for e in events])
    fresh = [e for e in events if _is_fresh(e, existing.get((e.kind, e.external_id)))]
    batch.result.skipped += len(events) - len(fresh)
    if not fresh:
        return
    accounts = batch.records("customer", {e.account_external_id for e in fresh if e.account_external_id})
    owners = _owner_users(batch, fresh)
    known_ids = {r.customer_id for r in (*existing.values(), *accounts.values()) if r.customer_id}
    by_id = {c.pk: c for c in Customer.objects.filter(pk__in=known_ids)} if known_ids else {}
    rows: list[CustomerRow] = []
    for event in fresh:
        record = existing.get((event.kind, event.external_id))
        account = accounts.get(("customer", event.account_external_id)) if event.account_external_id else None
        # The source's own record of the object, then the account it belongs to, then the e-mail.
        customer = by_id.get(record.customer_id) if record and record.customer_id else None
        if customer is None and account is not None and account.customer_id:
            customer = by_id.get(account.customer_id)
        rows.append(CustomerRow(email=event.email or "", customer=customer, matched=customer is not None))
    customers_match(rows=rows)
    creating: list[tuple[CustomerRow, list[Record]]] = []
    updated: set[int] = set()

    for event, row in zip(fresh, rows, strict=True):
        record = existing.get((event.kind, event.external_id))
        account = accounts.get(("customer", event.account_external_id)) if event.account_external_id else None
        profile = {name: getattr(event, name) for name in PROFILE_FIELDS if getattr(event, name) is not None}
        owner_id = owners.get(f"email:{(event.owner_email or '').lower()}") or owners.get(
            f"id:{event.owner_external_id}"
        )
        if owner_id:
            profile["owner_id"] = owner_id
        customer = row.customer
        if customer is not None:
            if event.kind == "customer" and event.email:
                profile["email"] = event.email
            for name, value in profile.items():
                if name == "signup_date":
                    continue  # the first source's signup date stands
                # Written with the derived fields, once per batch (`_write_customers`).
                batch.customer_changes[customer.pk][name] = value
            updated.add(customer.pk)
            batch.keep(
                event.kind,
                event.external_id,
                event.version,
                record,
                local_id=customer.pk,
                customer_id=customer.pk,
                data={},
            )
            if account is not None and not account.customer_id:
                batch.keep(
                    "customer",
                    account.external_id,
                    account.version,
                    account,
                    local_id=customer.pk,
                    customer_id=customer.pk,
                    data={},
                )
            continue
        if not event.email:
            # An account without an e-mail yet (a CRM company): keep its fields until a contact arrives.
            pending = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in profile.items()}
            batch.keep(
                event.kind, event.external_id, event.version, record, local_id=None, customer_id=None, data=pending
            )
            batch.result.skipped += 1
            continue
        if account is not None:  # a contact of a waiting account: the account's fields first
            profile = {**_parse_profile(account.data), **profile}
        row.new = {
            "name": profile.get("name") or profile.get("company") or event.email,
            "company": profile.get("company", ""),
            "plan": profile.get("plan", ""),
            "owner_id": profile.get("owner_id"),
            "signup_date": profile.get("signup_date") or event.version,
        }
        linked = [batch.keep(event.kind, event.external_id, event.version, record, data={})]
        if account is not None and not account.customer_id:
            linked.append(batch.keep("customer", account.external_id, account.version, account, data={}))
        creating.append((row, linked))

    upserted = customers_upsert(rows=[row for row, _ in creating], now=batch.now)
    for row, linked in creating:
        for linked_record in linked:
            linked_record.local_id = linked_record.customer_id = row.customer.pk  # type: ignore[union-attr]
    batch.result.created += len(upserted.created)
    batch.result.updated += len(updated)


def _parse_profile(data: dict) -> dict:
    profile = dict(data)
    if isinstance(profile.get("signup_date"), str):
        profile["signup_date"] = dt.datetime.fromisoformat(profile["signup_date"])
    return profile


def _apply_user_links(batch: _Batch, events: list[UserLinked], customer_of: Callable[[Any], int]) -> None:
    events = _newest(events, lambda e: e.user_id)
    existing = batch.records("user", [e.user_id for e in events])
    for event in events:
        record = existing.get(("user", event.user_id))
        if _is_fresh(event, record):
            customer_id = customer_of(event)
            batch.keep("user", event.user_id, event.version, record, local_id=customer_id, customer_id=customer_id)


def _apply_activity(batch: _Batch, events: list[ActivitySeen], customer_of: Callable[[Any], int]) -> None:
    """Sessions grow by each product event (additive: webhook dedupe guarantees each event once)."""
    if not events:
        return
    grouped: dict[str, list[ActivitySeen]] = defaultdict(list)
    for event in events:
        grouped[event.session_id].append(event)
    existing = batch.records("session", grouped)
    sessions = {
        s.pk: s for s in UserSession.objects.filter(pk__in=[r.local_id for r in existing.values() if r.local_id])
    }
    logins = dict(Customer.objects.filter(pk__in={customer_of(e) for e in events}).values_list("pk", "last_login"))
    to_create: list[tuple[UserSession, str, dt.datetime]] = []
    to_update: list[UserSession] = []
    usage: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last_seen: dict[int, dt.datetime] = {}
    for session_id, items in grouped.items():
        customer_id = customer_of(items[0])
        items.sort(key=lambda e: e.at)
        first, last = items[0].at, items[-1].at
        pages = sum(1 for e in items if e.page)
        actions = [{"at": e.at.isoformat(), "action": e.action} for e in items if e.action]
        for e in items:
            if e.action:
                usage[customer_id][e.action] += 1
        last_seen[customer_id] = max(last, last_seen.get(customer_id, last))
        record = existing.get(("session", session_id))
        session = sessions.get(record.local_id) if record and record.local_id else None
        if session is None:
            session = UserSession(
                customer_id=customer_id,
                started_at=first,
                ended_at=last,
                pages_viewed=pages,
                actions=actions,
                external_id=f"{batch.source_id}:{session_id}",
            )
            to_create.append((session, session_id, last))
        else:
            session.started_at = min(session.started_at, first)
            session.ended_at = max(session.ended_at or last, last)
            session.pages_viewed += pages
            session.actions = sorted([*session.actions, *actions], key=lambda a: a["at"])
            to_update.append(session)
            batch.keep("session", session_id, max(record.version, last), record)  # type: ignore[union-attr]
    UserSession.objects.bulk_create([s for s, _, _ in to_create], batch_size=1000)
    for session, session_id, last in to_create:
        batch.keep("session", session_id, last, None, local_id=session.pk, customer_id=session.customer_id)
    if to_update:
        values_update(UserSession, to_update, ["started_at", "ended_at", "pages_viewed", "actions"])
    batch.result.created += len(to_create)
    batch.result.updated += len(to_update)
    for customer_id, seen in last_seen.items():
        previous = logins.get(customer_id)
        if previous is None or seen > previous:
            batch.customer_changes[customer_id]["last_login"] = seen
            if previous is not None and seen - previous >= LONG_GAP:
                batch.result.significant.add(customer_id)
        if usage[customer_id]:
            batch.customer_changes[customer_id]["feature_usage_add"] = dict(usage[customer_id])


def _upsert_versioned[M: Model](
    batch: _Batch,
    kind: str,
    model: type[M],
    events: list[Any],
    customer_of: Callable[[Any], int],
    values_of: Callable[[Any], dict[str, Any]],
    on_row: Callable[[M | None, dict[str, Any]], bool],
) -> list[M]:
    """Create or update one `model` row per outside object, applying only events newer than the
    version recorded for it (so duplicates and out-of-order deliveries change nothing).

    `on_row(previous row or None, new values)` sees every change before it is written (for
    recounts and significance) and returns whether to report the written row back to the caller.
    """
    events = _newest(events, lambda e: e.external_id)
    existing = batch.records(kind, [e.external_id for e in events])
    fresh = [e for e in events if _is_fresh(e, existing.get((kind, e.external_id)))]
    batch.result.skipped += len(events) - len(fresh)
    rows = model._default_manager.in_bulk([r.local_id for r in existing.values() if r.local_id])
    to_create: list[tuple[M, Any]] = []
    to_update: list[M] = []
    reported: list[M] = []
    fields: list[str] = []
    for event in fresh:
        customer_id = customer_of(event)
        record = existing.get((kind, event.external_id))
        row = rows.get(record.local_id) if record else None
        values = {"customer_id": customer_id, **values_of(event)}
        fields = list(values)
        report = on_row(row, values)
        if row is None:
            row = model(external_id=f"{batch.source_id}:{event.external_id}", **values)
            to_create.append((row, event))
        else:
            for name, value in values.items():
                setattr(row, name, value)
            to_update.append(row)
            batch.keep(kind, event.external_id, event.version, record, customer_id=customer_id)
        if report:
            reported.append(row)
    model._default_manager.bulk_create([row for row, _ in to_create], batch_size=1000)
    for row, event in to_create:
        record = existing.get((kind, event.external_id))
        batch.keep(kind, event.external_id, event.version, record, local_id=row.pk, customer_id=row.customer_id)  # type: ignore[attr-defined]
    if to_update:
        values_update(model, to_update, ["customer" if name == "customer_id" else name for name in fields])
    batch.result.created += len(to_create)
    batch.result.updated += len(to_update)
    return reported


def _apply_tickets(batch: _Batch, events: list[TicketChanged], customer_of: Callable[[Any], int]) -> None:
    def on_row(ticket: SupportTicket | None, values: dict[str, Any]) -> bool:
        if ticket is None and values["status"] in (SupportTicket.Status.OPEN, SupportTicket.Status.PENDING):
            batch.result.significant.add(values["customer_id"])  # a ticket opened
        if ticket is not None:
            batch.recount_tickets.add(ticket.customer_id)  # it may have moved to another customer
        batch.recount_tickets.add(values["customer_id"])
        return False

    _upsert_versioned(
        batch,
        "ticket",
        SupportTicket,
        events,
        customer_of,
        lambda event: {
            "subject": event.subject[:1000],
            "status": event.status,
            "priority": event.priority,
            "opened_at": event.opened_at or event.version,
            "solved_at": event.solved_at,
        },
        on_row,
    )


def _apply_nps(batch: _Batch, events: list[NpsReceived], customer_of: Callable[[Any], int]) -> None:
    def on_row(response: NpsResponse | None, values: dict[str, Any]) -> bool:
        if response is None:
            batch.result.significant.add(values["customer_id"])  # a new answer
        else:
            batch.recount_nps.add(response.customer_id)
        batch.recount_nps.add(values["customer_id"])
        return False

    _upsert_versioned(
        batch,
        "nps",
        NpsResponse,
        events,
        customer_of,
        lambda event: {
            "score": max(0, min(10, int(event.score))),
            "comment": event.comment[:5000],
            "responded_at": event.responded_at,
        },
        on_row,
    )


def _apply_payments(batch: _Batch, events: list[PaymentRecorded], customer_of: Callable[[Any], int]) -> None:
    failed = BillingEvent.Kind.PAYMENT_FAILED

    def on_row(row: BillingEvent | None, values: dict[str, Any]) -> bool:
        # A new failed invoice, or one that was paid (or pending) and now failed.
        newly_failed = values["kind"] == failed and (row is None or row.kind != failed)
        if newly_failed:
            batch.result.significant.add(values["customer_id"])
        return newly_failed

    newly_failed = _upsert_versioned(
        batch,
        "payment",
        BillingEvent,
        events,
        customer_of,
        lambda event: {
            "kind": BillingEvent.Kind.PAYMENT_SUCCEEDED if event.succeeded else failed,
            "amount": event.amount,
            "occurred_at": event.occurred_at,
        },
        on_row,
    )
    batch.result.payments_failed.extend(
        PaymentFailed(
            customer_id=row.customer_id,
            billing_event_id=row.pk,
            amount=row.amount,
            occurred_at=row.occurred_at,
            integration_id=batch.source_id,
        )
        for row in newly_failed
    )


def _apply_subscriptions(batch: _Batch, events: list[SubscriptionChanged], customer_of: Callable[[Any], int]) -> None:
    """Keep each subscription's newest state; write one billing_events row per applied version."""
    events = _newest(events, lambda e: e.external_id)
    existing = batch.records("subscription", [e.external_id for e in events])
    fresh = [e for e in events if _is_fresh(e, existing.get(("subscription", e.external_id)))]
    batch.result.skipped += len(events) - len(fresh)
    history: list[BillingEvent] = []
    states: list[SubscriptionState] = []
    for event in fresh:
        customer_id = customer_of(event)
        record = existing.get(("subscription", event.external_id))
        live = event.status in LIVE_SUBSCRIPTION_STATES
        data = {
            "status": event.status,
            "mrr": str(event.mrr),
            "plan": event.plan,
            "cancelled_at": event.cancelled_at.isoformat() if event.cancelled_at else None,
        }
        batch.keep("subscription", event.external_id, event.version, record, customer_id=customer_id, data=data)
        history.append(
            BillingEvent(
                customer_id=customer_id,
                kind=BillingEvent.Kind.SUBSCRIPTION_CHANGED if live else BillingEvent.Kind.SUBSCRIPTION_CANCELLED,
                amount=event.mrr if live else 0,
                mrr_after=event.mrr if live else 0,
                plan_after=event.plan,
                occurred_at=event.version if live else (event.cancelled_at or event.version),
                external_id=f"{batch.source_id}:{event.external_id}:{event.version.timestamp():.6f}",
            )
        )
        states.append(
            SubscriptionState(
                customer_id=customer_id,
                external_id=event.external_id,  # as a history file names it, so both meet
                status=event.status,
                mrr=event.mrr,
                plan=event.plan,
                seen_at=event.version,
                period_start=event.period_start,
                period_end=event.period_end,
                bill_period_months=event.bill_period_months,
                cancelled_at=event.cancelled_at,
            )
        )
        batch.recount_billing.add(customer_id)
        if record is not None and record.customer_id and record.customer_id != customer_id:
            batch.recount_billing.add(record.customer_id)
        if not live:
            batch.result.significant.add(customer_id)
    BillingEvent.objects.bulk_create(history, batch_size=1000)
    # The subscription history the customer's contract (renewal date, ARR) is derived from.
    batch.recount_contracts |= subscription_states_record(states=states)
    batch.result.created += sum(1 for e in fresh if ("subscription", e.external_id) not in existing)
    batch.result.updated += sum(1 for e in fresh if ("subscription", e.external_id) in existing)


def _recount(batch: _Batch) -> None:
    """Derived fields of the touched customers, each from one aggregate read."""
    if batch.recount_tickets:
        open_counts = dict(
            SupportTicket.objects.filter(
                customer_id__in=batch.recount_tickets,
                status__in=[SupportTicket.Status.OPEN, SupportTicket.Status.PENDING],
            )
            .values("customer_id")
            .annotate(n=Count("id"))
            .values_list("customer_id", "n")
        )
        for customer_id in batch.recount_tickets:
            batch.customer_changes[customer_id]["support_tickets"] = open_counts.get(customer_id, 0)
    if batch.recount_nps:
        latest: dict[int, int] = {}
        for customer_id, score in (
            NpsResponse.objects.filter(customer_id__in=batch.recount_nps)
            .order_by("customer_id", "-responded_at", "-id")
            .values_list("customer_id", "score")
        ):
            latest.setdefault(customer_id, score)
        for customer_id in batch.recount_nps:
            batch.customer_changes[customer_id]["nps_score"] = latest.get(customer_id)
    if batch.recount_billing:
        subscriptions: dict[int, list[dict]] = defaultdict(list)
        for customer_id, data in batch.ledger.subscriptions(batch.recount_billing):
            subscriptions[customer_id].append(data)
        for customer_id in batch.recount_billing:
            subs = subscriptions.get(customer_id, [])
            live = [s for s in subs if s["status"] in LIVE_SUBSCRIPTION_STATES]
            changes = batch.customer_changes[customer_id]
            changes["mrr"] = sum((Decimal(s["mrr"]) for s in live), Decimal(0))
            if live:
                changes["plan"] = max(live, key=lambda s: (Decimal(s["mrr"]), s["plan"]))["plan"]
                changes["churned_at"], changes["is_active"] = None, True
            elif subs:
                ends = [dt.datetime.fromisoformat(s["cancelled_at"]) for s in subs if s.get("cancelled_at")]
                changes["churned_at"] = max(ends) if ends else batch.now
                changes["is_active"] = False


def _write_customers(batch: _Batch) -> None:
    changes = {pk: values for pk, values in batch.customer_changes.items() if values}
    if not changes:
        return
    customers = Customer.objects.in_bulk(list(changes))
    fields: set[str] = set()
    for pk, values in changes.items():
        customer = customers.get(pk)
        if customer is None:
            continue
        for name, value in values.items():
            if name == "feature_usage_add":
                usage = dict(customer.feature_usage or {})
                for action, count in value.items():
                    usage[action] = int(usage.get(action, 0)) + count
                customer.feature_usage = usage
                fields.add("feature_usage")
            else:
                setattr(customer, name, value)
                fields.add(name)
    customers_update(customers=list(customers.values()), fields=fields, now=batch.now)
