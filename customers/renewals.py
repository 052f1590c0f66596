"""Reads about contracts and revenue: upcoming renewals, the retained-revenue forecast, and gross
and net revenue retention, always scoped by user (`customer_scope`); and their daily count.

Counted daily (`renewal_counts_compute`, stored by `customers.services.renewal_count_take` after
the scoring batch). Every figure here is a sum over customers, so it is counted per owner (the
list's totals, each forecast month's sums, each retention month's sums in cents, all exact) into
`renewal_counts`; the pages add up the rows the user may see (every owner's, or a CSM's own) and
say when they were counted. Counted live, a manager's forecast page read every active customer and
evaluated 13 month boundaries over every subscription version (seconds at 100,000 customers).
Before the first count, the pages count live.

Forecast (`retained_revenue_forecast`). Each customer renewing in a month keeps their MRR unless
they churn; churn is a Bernoulli draw with the calibrated probability the model stored
(`churn_risk`, the chance of churning within the model's horizon, taken as the chance of not
renewing), independent across customers. Retained MRR of a month is then a sum of independent
scaled Bernoullis: mean sum(mrr * (1 - p)), variance sum(mrr^2 * p * (1 - p)); the interval is the
normal approximation mean +/- z * sd (z for the confidence asked, 90% by default), clipped to
[0, MRR up for renewal]. With few or very unequal customers in a month the normal interval is
rough; it says so by being wide.

Retention (`revenue_retention`), per complete calendar month from the subscription history: a customer's
MRR at an instant is the sum of the MRR of their versions in force then (started, not yet ended —
an active version whose period end passed with no renewal recorded counts as lapsed, as for the
contract; trials are not revenue). Over month M, for customers paying at its start:
    GRR = (start MRR - churned MRR - contraction) / start MRR
    NRR = (start MRR - churned MRR - contraction + expansion) / start MRR
where churned MRR is the start MRR of customers paying nothing at the month's end, contraction
and expansion the decreases and increases of those still paying. Customers who start paying
during the month are new business, in neither.
"""

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from statistics import NormalDist
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Round
from django.utils import timezone

from core.auth.roles import sees_all_customers
from customers.models import Customer, RenewalCount, Subscription
from customers.selectors import customer_scope

WINDOWS = (30, 60, 90, 180)


def renewals_queryset(*, user: Any, days: int | None = None, today: dt.date | None = None) -> QuerySet[Customer]:
    """Active customers the user may see, soonest renewal first (no renewal date last); with `days`,
    only those renewing from today up to `days` ahead."""
    customers = customer_scope(user=user).filter(is_active=True)
    if days is not None:
        today = today or timezone.localdate()
        customers = customers.filter(renewal_date__gte=today, renewal_date__lte=today + dt.timedelta(days=days))
    return customers.select_related("owner").order_by(F("renewal_date").asc(nulls_last=True), "id")


def revenue_at_risk(customer: Customer) -> Decimal:
    """MRR x churn probability, to the cent."""
    return (customer.mrr * customer.churn_risk).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class ForecastMonth:
    month: dt.date  # first day of the month
    customers: int
    mrr_up: Decimal  # MRR renewing in the month
    expected: Decimal  # expected retained MRR
    low: Decimal
    high: Decimal
    at_risk: Decimal  # expected MRR lost


@dataclass
class ForecastSums:
    """What a month's forecast adds up over its renewing customers; exact, so that sums over owners
    equal the sum over their customers."""

    customers: int = 0
    mrr_up: Decimal = Decimal(0)
    mean: Decimal = Decimal(0)  # sum of MRR x (1 - p)
    variance: Decimal = Decimal(0)  # sum of MRR^2 x p x (1 - p)

    def add(self, other: "ForecastSums") -> None:
        self.customers += other.customers
        self.mrr_up += other.mrr_up
        self.mean += other.mean
        self.variance += other.variance

    def as_json(self) -> list:
        return [self.customers, str(self.mrr_up), str(self.mean), str(self.variance)]

    @classmethod
    def from_json(cls, stored: list) -> "ForecastSums":
        customers, mrr_up, mean, variance = stored
        return cls(customers, Decimal(mrr_up), Decimal(mean), Decimal(variance))


def _cents(value: Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def forecast_month(month: dt.date, sums: ForecastSums, confidence: float = 0.9) -> ForecastMonth:
    """The retained-MRR forecast of one month from its renewing customers' sums."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    spread = z * math.sqrt(float(sums.variance))
    mean = float(sums.mean)
    return ForecastMonth(
        month=month,
        customers=sums.customers,
        mrr_up=sums.mrr_up,
        expected=_cents(sums.mean),
        low=_cents(max(0.0, mean - spread)),
        high=_cents(min(float(sums.mrr_up), mean + spread)),
        at_risk=_cents(sums.mrr_up - sums.mean),
    )


def forecast_sums(
    customers: QuerySet[Customer], *, first: dt.date, months: int, today: dt.date
) -> dict[int | None, list[ForecastSums]]:
    """Per owner, per calendar month from `first`, the sums of the active customers renewing from
    `today` on. One query."""
    end = first + relativedelta(months=months)
    per_owner: dict[int | None, list[ForecastSums]] = {}
    rows = (
        customers.filter(is_active=True, renewal_date__gte=today, renewal_date__lt=end)
        .order_by()
        .values_list("owner_id", "renewal_date", "mrr", "churn_risk")
    )
    with localcontext() as exact:
        exact.prec = 60  # MRR^2 x p x (1 - p) summed over a book stays exact
        for owner_id, renewal, mrr, p in rows.iterator(chunk_size=5000):
            if owner_id not in per_owner:
                per_owner[owner_id] = [ForecastSums() for _ in range(months)]
            sums = per_owner[owner_id][(renewal.year - first.year) * 12 + renewal.month - first.month]
            sums.customers += 1
            sums.mrr_up += mrr
            sums.mean += mrr * (1 - p)
            sums.variance += mrr * mrr * p * (1 - p)
    return per_owner


def _forecast(
    first: dt.date, months: int, owners: Iterable[list[ForecastSums]], confidence: float
) -> list[ForecastMonth]:
    total = [ForecastSums() for _ in range(months)]
    with localcontext() as exact:
        exact.prec = 60
        for sums in owners:
            for month, owner_month in zip(total, sums, strict=True):
                month.add(owner_month)
    return [forecast_month(first + relativedelta(months=n), total[n], confidence) for n in range(months)]


def retained_revenue_forecast(
    *, user: Any, months: int = 12, today: dt.date | None = None, confidence: float = 0.9
) -> list[ForecastMonth]:
    """Per calendar month from this one, the MRR renewing and how much of it is expected to stay,
    counted now."""
    today = today or timezone.localdate()
    first = today.replace(day=1)
    per_owner = forecast_sums(customer_scope(user=user), first=first, months=months, today=today)
    return _forecast(first, months, per_owner.values(), confidence)


@dataclass(frozen=True)
class RetentionMonth:
    month: dt.date
    start_mrr: Decimal
    churned: Decimal
    contraction: Decimal
    expansion: Decimal
    grr: float | None  # None when nobody paid at the month's start
    nrr: float | None

    @property
    def grr_percent(self) -> str:
        return "—" if self.grr is None else f"{self.grr * 100:.1f}%"

    @property
    def nrr_percent(self) -> str:
        return "—" if self.nrr is None else f"{self.nrr * 100:.1f}%"


@dataclass
class RetentionSums:
    """A month's start MRR, churned MRR, contraction and expansion, in whole cents."""

    start: int = 0
    churned: int = 0
    contraction: int = 0
    expansion: int = 0

    def add(self, other: "RetentionSums") -> None:
        self.start += other.start
        self.churned += other.churned
        self.contraction += other.contraction
        self.expansion += other.expansion

    def as_json(self) -> list[int]:
        return [self.start, self.churned, self.contraction, self.expansion]


def _in_force_cents(at: dt.datetime) -> Sum:
    """A customer's MRR at `at` in whole cents: the sum over their versions in force then. Cents, so
    that sums and comparisons are exact on SQLite too, where decimals are stored as floats."""
    in_force = Q(started_at__lte=at) & (Q(ended_at__isnull=True) | Q(ended_at__gt=at))
    cents = Cast(Round(F("mrr") * Value(100)), BigIntegerField())
    return Sum(Case(When(in_force, then=cents), default=Value(0), output_field=BigIntegerField()))


def retention_bounds(today: dt.date, months: int) -> list[dt.date]:
    """The first days of the last `months` complete months, and of this one."""
    last_end = today.replace(day=1)
    return [last_end - relativedelta(months=months - n) for n in range(months + 1)]


def retention_sums(
    customers: QuerySet[Customer], *, months: int, today: dt.date
) -> dict[int | None, list[RetentionSums]]:
    """Per owner, each of the last `months` complete months' sums (oldest first). One query sums each
    customer's MRR in force at every month boundary; Python compares a customer's start and end."""
    zone = timezone.get_current_timezone()
    instants = [dt.datetime.combine(day, dt.time(), tzinfo=zone) for day in retention_bounds(today, months)]
    per_customer = (
        Subscription.objects.filter(customer__in=customers.values("pk"), started_at__lte=instants[-1])
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=instants[0]))
        .exclude(status=Subscription.Status.TRIALING)
        .order_by()
        .values("customer_id", "customer__owner_id")
        .annotate(**{f"m{i}": _in_force_cents(at) for i, at in enumerate(instants)})
        .values_list("customer__owner_id", *(f"m{i}" for i in range(len(instants))))
    )
    per_owner: dict[int | None, list[RetentionSums]] = {}
    for owner_id, *boundaries in per_customer.iterator(chunk_size=5000):
        if owner_id not in per_owner:
            per_owner[owner_id] = [RetentionSums() for _ in range(months)]
        sums = per_owner[owner_id]
        mrr = [int(cents) for cents in boundaries]
        for n in range(months):
            before, after = mrr[n], mrr[n + 1]
            if before <= 0:
                continue  # not paying at the start: new business, if anything
            month = sums[n]
            month.start += before
            if after <= 0:
                month.churned += before
            elif after < before:
                month.contraction += before - after
            else:
                month.expansion += after - before
    return per_owner


def _retention(bounds: list[dt.date], owners: Iterable[list[RetentionSums]]) -> list[RetentionMonth]:
    months = len(bounds) - 1
    total = [RetentionSums() for _ in range(months)]
    for sums in owners:
        for month, owner_month in zip(total, sums, strict=True):
            month.add(owner_month)

    def money(cents: int) -> Decimal:
        return (Decimal(cents) / 100).quantize(Decimal("0.01"))

    result = []
    for n, sums in enumerate(total):
        start_mrr, churned = money(sums.start), money(sums.churned)
        contraction, expansion = money(sums.contraction), money(sums.expansion)
        kept = start_mrr - churned - contraction
        result.append(
            RetentionMonth(
                month=bounds[n],
                start_mrr=start_mrr,
                churned=churned,
                contraction=contraction,
                expansion=expansion,
                grr=float(kept / start_mrr) if start_mrr else None,
                nrr=float((kept + expansion) / start_mrr) if start_mrr else None,
            )
        )
    return result


def revenue_retention(*, user: Any, months: int = 12, today: dt.date | None = None) -> list[RetentionMonth]:
    """GRR and NRR of each of the last `months` complete calendar months (oldest first), counted now."""
    today = today or timezone.localdate()
    per_owner = retention_sums(customer_scope(user=user), months=months, today=today)
    return _retention(retention_bounds(today, months), per_owner.values())


# --- The list's totals --------------------------------------------------------------------------


@dataclass(frozen=True)
class RenewalTotals:
    count: int
    mrr: Decimal
    arr: Decimal
    at_risk: Decimal  # sum of MRR x churn probability, to the cent
    counted_at: dt.datetime | None = None  # None: counted now


def _totals() -> dict[str, Any]:
    return {
        "count": Count("id"),
        "mrr_sum": Sum("mrr"),
        "arr_sum": Sum("contract_value"),
        "at_risk_sum": Sum(
            ExpressionWrapper(F("mrr") * F("churn_risk"), output_field=DecimalField(max_digits=22, decimal_places=6))
        ),
    }


def renewal_totals(customers: QuerySet[Customer]) -> RenewalTotals:
    """Count, MRR, ARR and revenue at risk of a (filtered) renewals list, counted now. One query."""
    totals = customers.order_by().aggregate(**_totals())
    return RenewalTotals(
        count=totals["count"],
        mrr=totals["mrr_sum"] or Decimal(0),
        arr=totals["arr_sum"] or Decimal(0),
        at_risk=_cents(totals["at_risk_sum"] or 0),
    )


# --- The daily count ----------------------------------------------------------------------------


def renewal_counts_compute(*, months: int = 12, now: dt.datetime | None = None) -> list[RenewalCount]:
    """Every owner's renewal figures, counted from the customers and their subscription versions
    (the list's totals, the forecast from this month on, retention of the last `months` complete
    months), as unsaved `renewal_counts` rows. Three queries over the whole book."""
    counted_at = now or timezone.now()
    today = timezone.localdate(counted_at)
    first = today.replace(day=1)
    customers = Customer.objects.all()
    totals = {
        row.pop("owner_id"): row
        for row in customers.filter(is_active=True).order_by().values("owner_id").annotate(**_totals())
    }
    forecast = forecast_sums(customers, first=first, months=months, today=today)
    retention = retention_sums(customers, months=months, today=today)
    nothing = {"count": 0, "mrr_sum": None, "arr_sum": None, "at_risk_sum": None}
    return [
        RenewalCount(
            owner_id=owner_id,
            counted_at=counted_at,
            counted_on=today,
            active_customers=totals.get(owner_id, nothing)["count"],
            mrr=totals.get(owner_id, nothing)["mrr_sum"] or 0,
            arr=totals.get(owner_id, nothing)["arr_sum"] or 0,
            revenue_at_risk=totals.get(owner_id, nothing)["at_risk_sum"] or 0,
            forecast=[month.as_json() for month in forecast.get(owner_id) or [ForecastSums()] * months],
            retention=[month.as_json() for month in retention.get(owner_id) or [RetentionSums()] * months],
        )
        for owner_id in totals.keys() | forecast.keys() | retention.keys()
    ]


# --- What the pages read ------------------------------------------------------------------------


@dataclass(frozen=True)
class RenewalOverview:
    forecast: list[ForecastMonth]
    retention: list[RetentionMonth]
    counted_at: dt.datetime | None  # None: counted now


def _stored_counts(user: Any) -> list[RenewalCount]:
    """The latest count's rows of the owners the user may see: every owner's for those who see the
    whole book, the user's own for a CSM."""
    counts = RenewalCount.objects.order_by("owner_id")
    return list(counts if sees_all_customers(user) else counts.filter(owner_id=user.pk))


def renewal_overview(*, user: Any, confidence: float = 0.9) -> RenewalOverview:
    """The forecast and revenue retention the user may see, as the daily run last counted them (a
    read of a few dozen rows, scoped like the customers: a CSM's is their portfolio's), or counted
    now when there is no count for them yet."""
    stored = _stored_counts(user)
    if not stored:
        return RenewalOverview(
            forecast=retained_revenue_forecast(user=user, confidence=confidence),
            retention=revenue_retention(user=user),
            counted_at=None,
        )
    counted_on = stored[0].counted_on
    return RenewalOverview(
        forecast=_forecast(
            counted_on.replace(day=1),
            len(stored[0].forecast),
            ([ForecastSums.from_json(month) for month in row.forecast] for row in stored),
            confidence,
        ),
        retention=_retention(
            retention_bounds(counted_on, len(stored[0].retention)),
            ([RetentionSums(*month) for month in row.retention] for row in stored),
        ),
        counted_at=stored[0].counted_at,
    )


def stored_renewal_totals(*, user: Any) -> RenewalTotals | None:
    """The unfiltered renewals list's totals as the daily run last counted them, None before then."""
    stored = _stored_counts(user)
    if not stored:
        return None
    return RenewalTotals(
        count=sum(row.active_customers for row in stored),
        mrr=sum((row.mrr for row in stored), Decimal(0)),
        arr=sum((row.arr for row in stored), Decimal(0)),
        at_risk=_cents(sum((row.revenue_at_risk for row in stored), Decimal(0))),
        counted_at=stored[0].counted_at,
    )
