"""Writes of a customer's contract: renewal date, contract value (ARR) and billing period.

The contract is derived from the customer's subscription versions (`subscriptions`: the history
import and the Stripe connector write them). A hand edit wins until a subscription fact newer than
the edit arrives — a version that starts after it, or a cancellation that ends after it — because
that fact is better news than the edit (a renewal, a plan change, a departure) and older facts
imported late are not.

Rules of the derivation (`contract_from_versions`):
- live versions are those paying now: status active, trialing or past due, started, not ended;
- ARR = 12 x the sum of the live versions' MRR; a customer whose versions all ended has ARR 0 and
  no renewal date;
- each live version's current period ends at its `ended_at` when the source gives it (Stripe's
  `current_period_end`, an import's `end_date`), else at the first multiple of `bill_period_months`
  after its start that lies ahead; without either the period end is unknown;
- the renewal date is the earliest period end among live versions (its billing period is kept).
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from itertools import batched

from dateutil.relativedelta import relativedelta
from django.db import connection, transaction
from django.utils import timezone

from customers.models import ContractSource, Customer, Subscription

LIVE_STATUSES = {Subscription.Status.ACTIVE, Subscription.Status.TRIALING, Subscription.Status.PAST_DUE}
CONTRACT_FIELDS = ("renewal_date", "contract_value", "bill_period_months", "contract_source", "contract_set_at")
CHUNK = 5_000


@dataclass(frozen=True)
class Version:
    """What the derivation needs of one subscription version."""

    mrr: Decimal
    started_at: dt.datetime
    ended_at: dt.datetime | None
    status: str
    bill_period_months: int | None


@dataclass(frozen=True)
class Contract:
    renewal_date: dt.date | None
    contract_value: Decimal
    bill_period_months: int | None
    fact_at: dt.datetime  # the newest subscription fact it rests on


def period_end(version: Version, now: dt.datetime) -> dt.datetime | None:
    """When the version's current billing period ends (None when the source does not say)."""
    if version.ended_at is not None:
        return version.ended_at
    months = version.bill_period_months
    if not months or months <= 0:
        return None
    elapsed = relativedelta(now, version.started_at)
    periods = (elapsed.years * 12 + elapsed.months) // months + 1
    end = version.started_at + relativedelta(months=periods * months)
    while end <= now:  # a day-of-month clamp can leave the computed end just behind now
        periods += 1
        end = version.started_at + relativedelta(months=periods * months)
    return end


def contract_from_versions(versions: Iterable[Version], now: dt.datetime) -> Contract | None:
    """The contract these versions describe at `now`; None without any version."""
    versions = list(versions)
    if not versions:
        return None
    facts = [v.started_at for v in versions if v.started_at <= now]
    facts += [v.ended_at for v in versions if v.status not in LIVE_STATUSES and v.ended_at and v.ended_at <= now]
    live = [
        v
        for v in versions
        if v.status in LIVE_STATUSES and v.started_at <= now and (v.ended_at is None or v.ended_at > now)
    ]
    value = (sum((v.mrr for v in live), Decimal(0)) * 12).quantize(Decimal("0.01"))
    ends = [(end, v) for v in live if (end := period_end(v, now)) is not None]
    renewal, months = None, None
    if ends:
        end, version = min(ends, key=lambda item: item[0])
        renewal, months = timezone.localdate(end), version.bill_period_months
    elif live:
        months = max(live, key=lambda v: v.mrr).bill_period_months
    return Contract(
        renewal_date=renewal,
        contract_value=value,
        bill_period_months=months,
        fact_at=max(facts) if facts else min(v.started_at for v in versions),
    )


def customer_contracts_refresh(*, customer_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Re-derive the contract of these customers from their subscription versions; returns how many
    rows changed. Customers without versions keep what they have; hand edits newer than every
    subscription fact stand. Set-based: one read per chunk of customers, one bulk write."""
    now = now or timezone.now()
    ids = sorted(set(customer_ids))
    changed = 0
    for chunk in batched(ids, CHUNK):
        versions: dict[int, list[Version]] = defaultdict(list)
        for customer_id, *fields in Subscription.objects.filter(customer_id__in=chunk).values_list(
            "customer_id", "mrr", "started_at", "ended_at", "status", "bill_period_months"
        ):
            versions[customer_id].append(Version(*fields))
        if not versions:
            continue
        customers = Customer.objects.filter(pk__in=list(versions)).only("pk", *CONTRACT_FIELDS)
        to_write = []
        for customer in customers:
            contract = contract_from_versions(versions[customer.pk], now)
            if contract is None:
                continue
            manual = customer.contract_source == ContractSource.MANUAL
            if manual and customer.contract_set_at and contract.fact_at <= customer.contract_set_at:
                continue
            values = {
                "renewal_date": contract.renewal_date,
                "contract_value": contract.contract_value,
                "bill_period_months": contract.bill_period_months,
                "contract_source": ContractSource.SUBSCRIPTIONS,
                "contract_set_at": contract.fact_at,
            }
            if any(getattr(customer, name) != value for name, value in values.items()):
                for name, value in values.items():
                    setattr(customer, name, value)
                to_write.append(customer)
        _write_contracts(to_write)
        changed += len(to_write)
    return changed


def _write_contracts(customers: list[Customer]) -> None:
    """One parameterised UPDATE per customer, sent as a batch. `bulk_update` builds one CASE WHEN
    per field over the whole batch, which Django takes longer to compile than the database to run
    (50 s for the 10,000 contracts of a history import)."""
    if not customers:
        return
    meta = Customer._meta
    fields = [meta.get_field(name) for name in CONTRACT_FIELDS]
    qn = connection.ops.quote_name
    sets = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    rows = [[*(f.get_db_prep_save(getattr(c, f.attname), connection) for f in fields), c.pk] for c in customers]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {qn(meta.db_table)} SET {sets} WHERE {qn(meta.pk.column)} = %s", rows)  # noqa: S608


@transaction.atomic
def customer_contract_set(
    *,
    customer: Customer,
    renewal_date: dt.date | None,
    contract_value: Decimal | None,
    bill_period_months: int | None = None,
    now: dt.datetime | None = None,
) -> Customer:
    """Set a customer's contract by hand; it stands until a newer subscription fact arrives."""
    customer.renewal_date = renewal_date
    customer.contract_value = contract_value
    customer.bill_period_months = bill_period_months
    customer.contract_source = ContractSource.MANUAL
    customer.contract_set_at = now or timezone.now()
    customer.save(update_fields=[*CONTRACT_FIELDS, "updated_at"])
    return customer


@dataclass(frozen=True)
class SubscriptionState:
    """A connector's view of one subscription now (Stripe's subscription object, say)."""

    customer_id: int
    external_id: str
    status: str  # the source's: active, trialing, past_due, unpaid, canceled, …
    mrr: Decimal
    plan: str
    seen_at: dt.datetime  # the source's version time of this state
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    bill_period_months: int | None = None
    cancelled_at: dt.datetime | None = None


# The source's statuses onto ours; anything else (incomplete, paused) is a version that ended.
STATUS_MAP = {
    "active": Subscription.Status.ACTIVE,
    "trialing": Subscription.Status.TRIALING,
    "past_due": Subscription.Status.PAST_DUE,
    "unpaid": Subscription.Status.PAST_DUE,
    "canceled": Subscription.Status.CANCELED,
    "cancelled": Subscription.Status.CANCELED,
    "incomplete_expired": Subscription.Status.CANCELED,
}


def subscription_states_record(*, states: list[SubscriptionState]) -> set[int]:
    """Turn subscription states seen by a connector into versions in `subscriptions`; returns the
    customers touched. Callers pass states newest-last and already deduplicated by version.

    A version is a period at one plan and price, keyed by (external_id, started_at) as the history
    import keys it: the same period at the same price is updated in place; a new period (a
    renewal) starts a version at the period's start, a price or plan change inside a period starts
    one at the moment it was seen; either closes the versions it supersedes (status `ended`). A
    cancellation closes the current version with status `canceled` at the cancellation time.
    """
    if not states:
        return set()
    ids = {s.external_id for s in states}
    rows: dict[str, list[Subscription]] = defaultdict(list)
    for row in Subscription.objects.filter(external_id__in=ids).order_by("started_at", "pk"):
        rows[row.external_id].append(row)
    touched: dict[int, Subscription] = {}
    for state in sorted(states, key=lambda s: s.seen_at):
        versions = rows[state.external_id]
        status = STATUS_MAP.get(state.status, Subscription.Status.ENDED)
        current = versions[-1] if versions else None
        if status not in LIVE_STATUSES:
            end = state.cancelled_at or state.seen_at
            if current is None:
                start = min(state.period_start or end, end)
                current = Subscription(external_id=state.external_id, started_at=start)
                versions.append(current)
            current.customer_id, current.status, current.ended_at = state.customer_id, status, end
            current.mrr, current.plan = state.mrr, state.plan or current.plan
            touched[id(current)] = current
            continue
        start = state.period_start or state.seen_at
        if state.period_start is not None:
            same_period = current is not None and current.started_at >= start
        else:  # a source without periods: the open version goes on until the price or plan changes
            same_period = current is not None and current.status in LIVE_STATUSES and current.ended_at is None
        if same_period and current.mrr == state.mrr and current.plan == state.plan:
            version = current
        else:
            begin = state.seen_at if same_period else start
            for row in versions:
                if row.status in LIVE_STATUSES and (row.ended_at is None or row.ended_at > begin):
                    row.status, row.ended_at = Subscription.Status.ENDED, begin
                    touched[id(row)] = row
            version = Subscription(external_id=state.external_id, started_at=begin)
            versions.append(version)
        version.customer_id, version.status, version.ended_at = state.customer_id, status, state.period_end
        version.mrr, version.plan = state.mrr, state.plan
        version.bill_period_months = state.bill_period_months
        touched[id(version)] = version
    written = list(touched.values())
    new = [row for row in written if row.pk is None]
    old = [row for row in written if row.pk is not None]
    Subscription.objects.bulk_create(new, batch_size=1000)
    fields = ["customer_id", "plan", "mrr", "ended_at", "status", "bill_period_months"]
    Subscription.objects.bulk_update(old, fields, batch_size=1000)
    return {row.customer_id for row in written}
