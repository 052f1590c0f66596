"""Writes around predictions: daily portfolio snapshots and the aggregated churn causes."""

import datetime as dt
from collections import Counter

from django.db import transaction
from django.db.models import Count, F, Q, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from customers.models import Customer
from customers.selectors import RISK_BINS, SIZE_BOUNDS, risk_revenue_groups, risk_thresholds
from customers.services import renewal_count_take
from predictions.causes import CAUSES
from predictions.models import ChurnCause, PortfolioSnapshot
from predictions.selectors import cause_impact, count_latest_causes

# As many as the home lists: the book's riskiest are then among the owners' riskiest.
RISKIEST_PER_OWNER = 15


@transaction.atomic
def portfolio_snapshot_take(*, day: dt.date | None = None, riskiest: int = RISKIEST_PER_OWNER) -> int:
    """Write (or rewrite) the snapshot rows of `day` for every owner from current customer data.

    Besides the daily totals, each row holds what the team home shows per CSM (medium risk, MRR at
    risk) and the owner's `riskiest` active customers: the book's riskiest are among them, so the
    team home reads these rows instead of scanning every customer twice (churn_risk has no index,
    on purpose: see Customer.Meta). It also holds what a manager's Reports page sums (per plan:
    customers per risk bin, revenue at risk per account size). Three scans of the customers
    table, here, once a day; then the renewals pages' count (`customers.services.renewal_count_take`)."""
    day = day or timezone.localdate()
    taken_at = timezone.now()
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    medium, high = risk_thresholds()
    active = Q(is_active=True)
    rows = Customer.objects.values("owner_id").annotate(
        active=Count("id", filter=active),
        at_risk=Count("id", filter=active & Q(churn_risk__gte=high)),
        medium=Count("id", filter=active & Q(churn_risk__gte=medium, churn_risk__lt=high)),
        risk_total=Sum("churn_risk", filter=active),
        mrr_total=Sum("mrr", filter=active),
        mrr_at_risk=Sum("mrr", filter=active & Q(churn_risk__gte=medium)),
        churned=Count("id", filter=Q(churned_at__gte=start, churned_at__lt=start + dt.timedelta(days=1))),
    )
    ranked = (
        Customer.objects.filter(is_active=True)
        .annotate(
            rank=Window(RowNumber(), partition_by=F("owner_id"), order_by=[F("churn_risk").desc(), F("id").asc()])
        )
        .filter(rank__lte=riskiest)
        .order_by("owner_id", "rank")
        .values_list("owner_id", "id")
    )
    top: dict[int | None, list[int]] = {}
    for owner_id, customer_id in ranked:
        top.setdefault(owner_id, []).append(customer_id)
    groups: dict[int | None, list[dict]] = {}
    for group in risk_revenue_groups(Customer.objects.filter(is_active=True)):
        groups.setdefault(group.pop("owner_id"), []).append(_stored_group(group))
    PortfolioSnapshot.objects.filter(date=day).delete()
    snapshots = [
        PortfolioSnapshot(
            date=day,
            owner_id=row["owner_id"],
            active_customers=row["active"],
            at_risk_customers=row["at_risk"],
            medium_risk_customers=row["medium"],
            risk_sum=float(row["risk_total"] or 0),
            mrr_sum=row["mrr_total"] or 0,
            mrr_at_risk=row["mrr_at_risk"] or 0,
            churned_customers=row["churned"],
            riskiest_customer_ids=top.get(row["owner_id"], []),
            report_groups=sorted(groups.get(row["owner_id"], []), key=lambda group: group["plan"]),
            taken_at=taken_at,
        )
        for row in rows
    ]
    PortfolioSnapshot.objects.bulk_create(snapshots)
    # The renewals pages' figures are counted with the rest of the book, from the same scores.
    renewal_count_take()
    return len(snapshots)


def _stored_group(group: dict) -> dict:
    """One (owner, plan) group of `risk_revenue_groups` as JSON: the exact decimals as strings."""
    sizes = [group[f"size_{i}"] for i in range(len(SIZE_BOUNDS))]
    return {
        "plan": group["plan"],
        "bands": [group[f"band_{i}"] for i in range(RISK_BINS)],
        "sizes": [None if value is None else str(value) for value in sizes],
    }


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
