"""Writes around predictions: daily portfolio snapshots and the aggregated churn causes."""

import datetime as dt
from collections import Counter

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from customers.models import Customer
from customers.selectors import risk_thresholds
from predictions.causes import CAUSES
from predictions.models import ChurnCause, PortfolioSnapshot
from predictions.selectors import cause_impact, count_latest_causes


@transaction.atomic
def portfolio_snapshot_take(*, day: dt.date | None = None) -> int:
    """Write (or rewrite) the snapshot rows of `day` for every owner from current customer data."""
    day = day or timezone.localdate()
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    high = risk_thresholds()[1]
    rows = Customer.objects.values("owner_id").annotate(
        active=Count("id", filter=Q(is_active=True)),
        at_risk=Count("id", filter=Q(is_active=True, churn_risk__gte=high)),
        risk=Sum("churn_risk", filter=Q(is_active=True)),
        mrr=Sum("mrr", filter=Q(is_active=True)),
        churned=Count("id", filter=Q(churned_at__gte=start, churned_at__lt=start + dt.timedelta(days=1))),
    )
    PortfolioSnapshot.objects.filter(date=day).delete()
    snapshots = [
        PortfolioSnapshot(
            date=day,
            owner_id=row["owner_id"],
            active_customers=row["active"],
            at_risk_customers=row["at_risk"],
            risk_sum=float(row["risk"] or 0),
            mrr_sum=row["mrr"] or 0,
            churned_customers=row["churned"],
        )
        for row in rows
    ]
    PortfolioSnapshot.objects.bulk_create(snapshots)
    return len(snapshots)


@transaction.atomic
def churn_causes_refresh(*, counted: tuple[Counter[str], int] | None = None) -> int:
    """Recount every known cause over active customers' latest predictions into `churn_causes`.

    `counted` is (customers per cause, customers) when the caller already has them: the daily
    batch has just scored every active customer, so their latest causes are in its hands and
    reading 80 MB of stored predictions back would only repeat them.
    """
    counts, total = counted or count_latest_causes(Customer.objects.filter(is_active=True))
    for name, info in CAUSES.items():
        count = counts.get(name, 0)
        percent = round(100 * count / total) if total else 0
        ChurnCause.objects.update_or_create(
            cause=name,
            defaults={
                "count": count,
                "percent": percent,
                "impact": cause_impact(percent),
                "category": info.category,
                "description": info.description,
            },
        )
    return len(CAUSES)
