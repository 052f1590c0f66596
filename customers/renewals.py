"""Reads about contracts and revenue: upcoming renewals, the retained-revenue forecast, and gross
and net revenue retention. Always scoped by user (`customer_scope`).

Forecast (`retained_revenue_forecast`). Each customer renewing in a month keeps their MRR unless
they churn; churn is a Bernoulli draw with the calibrated probability the model stored
(`churn_risk`, the chance of churning within the model's horizon, taken as the chance of not
renewing), independent across customers. Retained MRR of a month is then a sum of independent
scaled Bernoullis: mean sum(mrr * (1 - p)), variance sum(mrr^2 * p * (1 - p)); the interval is the
normal approximation mean +/- z * sd (z for the confidence asked, 90% by default), clipped to
[0, MRR up for renewal]. With few or very unequal customers in a month the normal interval is
rough; it says so by being wide.

Retention (`revenue_retention`), per calendar month from the subscription history: a customer's
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
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db.models import BigIntegerField, Case, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Cast, Round
from django.utils import timezone

from customers.models import Customer, Subscription
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


def _cents(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


def forecast_month(month: dt.date, rows: list[tuple[Decimal, Decimal]], confidence: float = 0.9) -> ForecastMonth:
    """The retained-MRR forecast of one month from (mrr, churn probability) pairs."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    up = sum((mrr for mrr, _ in rows), Decimal("0.00"))
    mean = sum(float(mrr) * (1 - float(p)) for mrr, p in rows)
    variance = sum(float(mrr) ** 2 * float(p) * (1 - float(p)) for mrr, p in rows)
    spread = z * math.sqrt(variance)
    return ForecastMonth(
        month=month,
        customers=len(rows),
        mrr_up=up,
        expected=_cents(mean),
        low=_cents(max(0.0, mean - spread)),
        high=_cents(min(float(up), mean + spread)),
        at_risk=_cents(float(up) - mean),
    )


def retained_revenue_forecast(
    *, user: Any, months: int = 12, today: dt.date | None = None, confidence: float = 0.9
) -> list[ForecastMonth]:
    """Per calendar month from this one, the MRR renewing and how much of it is expected to stay."""
    today = today or timezone.localdate()
    first = today.replace(day=1)
    end = first + relativedelta(months=months)
    by_month: dict[dt.date, list[tuple[Decimal, Decimal]]] = defaultdict(list)
    rows = (
        customer_scope(user=user)
        .filter(is_active=True, renewal_date__gte=today, renewal_date__lt=end)
        .values_list("renewal_date", "mrr", "churn_risk")
    )
    for renewal, mrr, p in rows:
        by_month[renewal.replace(day=1)].append((mrr, p))
    return [
        forecast_month(first + relativedelta(months=n), by_month.get(first + relativedelta(months=n), []), confidence)
        for n in range(months)
    ]


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


def _in_force_cents(at: dt.datetime) -> Sum:
    """A customer's MRR at `at` in whole cents: the sum over their versions in force then. Cents, so
    that sums and comparisons are exact on SQLite too, where decimals are stored as floats."""
    in_force = Q(started_at__lte=at) & (Q(ended_at__isnull=True) | Q(ended_at__gt=at))
    cents = Cast(Round(F("mrr") * Value(100)), BigIntegerField())
    return Sum(Case(When(in_force, then=cents), default=Value(0), output_field=BigIntegerField()))


def _month_sums(n: int) -> dict[str, Sum]:
    """Month n's start MRR, churned MRR, contraction and expansion (in cents) over customers, from
    each customer's MRR at the month's start (`m<n>`) and end (`m<n+1>`)."""
    before, after = F(f"m{n}"), F(f"m{n + 1}")
    paying = Q(**{f"m{n}__gt": 0})
    still = paying & Q(**{f"m{n + 1}__gt": 0})

    def total(condition: Q, value: Any) -> Sum:
        return Sum(Case(When(condition, then=value), default=Value(0), output_field=BigIntegerField()))

    return {
        f"start{n}": total(paying, before),
        f"churned{n}": total(paying & Q(**{f"m{n + 1}__lte": 0}), before),
        f"contraction{n}": total(still & Q(**{f"m{n + 1}__lt": before}), before - after),
        f"expansion{n}": total(still & Q(**{f"m{n + 1}__gt": before}), after - before),
    }


def revenue_retention(*, user: Any, months: int = 12, today: dt.date | None = None) -> list[RetentionMonth]:
    """GRR and NRR of each of the last `months` complete calendar months (oldest first).

    One query: the inner part sums each customer's MRR in force at every month boundary, the outer
    part adds up, per month, the start MRR and its churn, contraction and expansion."""
    today = today or timezone.localdate()
    last_end = today.replace(day=1)
    bounds = [last_end - relativedelta(months=months - n) for n in range(months + 1)]
    zone = timezone.get_current_timezone()
    instants = [dt.datetime.combine(day, dt.time(), tzinfo=zone) for day in bounds]
    per_customer = (
        Subscription.objects.filter(customer__in=customer_scope(user=user).values("pk"), started_at__lte=instants[-1])
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=instants[0]))
        .exclude(status=Subscription.Status.TRIALING)
        .order_by()
        .values("customer_id")
        .annotate(**{f"m{i}": _in_force_cents(at) for i, at in enumerate(instants)})
    )
    aggregates: dict[str, Sum] = {}
    for n in range(months):
        aggregates.update(_month_sums(n))
    totals = per_customer.aggregate(**aggregates)

    def money(key: str) -> Decimal:
        return (Decimal(totals[key] or 0) / 100).quantize(Decimal("0.01"))

    result = []
    for n in range(months):
        start_mrr, churned = money(f"start{n}"), money(f"churned{n}")
        contraction, expansion = money(f"contraction{n}"), money(f"expansion{n}")
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
