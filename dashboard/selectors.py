"""Dashboard figures, composed from the apps' scoped reads. Every figure counts only what the
user may see, and comes from the database (current rows plus daily portfolio snapshots)."""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from core.auth.roles import sees_all_customers
from customers.selectors import customer_scope, risk_thresholds
from interventions.models import Intervention
from interventions.selectors import intervention_scope
from predictions.models import PortfolioSnapshot

COMPARE_DAYS = 30  # "change" figures compare with the snapshot a month ago
SAVED_WINDOW_DAYS = 90  # revenue saved counts interventions completed in this window


def _snapshots(user: Any) -> QuerySet[PortfolioSnapshot]:
    snapshots = PortfolioSnapshot.objects.all()
    return snapshots if sees_all_customers(user) else snapshots.filter(owner_id=user.pk)


def _current(user: Any) -> dict:
    high = risk_thresholds()[1]
    return customer_scope(user=user).aggregate(
        active=Count("id", filter=Q(is_active=True)),
        avg_risk=Avg("churn_risk", filter=Q(is_active=True)),
        at_risk=Count("id", filter=Q(is_active=True, churn_risk__gte=high)),
        mrr=Sum("mrr", filter=Q(is_active=True)),
    )


def _snapshot_on(user: Any, day: dt.date) -> dict | None:
    """Totals of the latest snapshot taken on or before `day`, summed over visible owners."""
    snapshots = _snapshots(user)
    latest = snapshots.filter(date__lte=day).aggregate(day=Max("date"))["day"]
    if latest is None:
        return None
    return snapshots.filter(date=latest).aggregate(
        active=Sum("active_customers"), risk_sum=Sum("risk_sum"), at_risk=Sum("at_risk_customers")
    )


def dashboard_metrics(*, user: Any) -> dict:
    """The app's dashboard cards (`examples/metrics.json`).

    churnRisk: average churn probability of active customers, percent, 1 decimal.
    churnChange: that average minus the one a month ago, in points.
    customersAtRisk / riskChange: active customers at high risk, and the % change in that count.
    activeInterventions: interventions not yet completed or cancelled.
    successRate: % of interventions with a recorded outcome that succeeded.
    revenueSaved: thousands of $ of revenue impact recorded on interventions that succeeded in
    the last 90 days; revenueIncrease: that figure as a % of annual recurring revenue.
    """
    now = current = _current(user)
    avg_now = float(now["avg_risk"] or 0) * 100
    past = _snapshot_on(user, timezone.localdate() - dt.timedelta(days=COMPARE_DAYS))
    churn_change = risk_change = 0.0
    if past and past["active"]:
        churn_change = avg_now - 100 * (past["risk_sum"] or 0) / past["active"]
        if past["at_risk"]:
            risk_change = 100 * (current["at_risk"] - past["at_risk"]) / past["at_risk"]

    since = timezone.now() - dt.timedelta(days=SAVED_WINDOW_DAYS)
    work = intervention_scope(user=user).aggregate(
        open=Count("id", filter=Q(status__in=Intervention.OPEN_STATUSES)),
        decided=Count("id", filter=Q(status=Intervention.Status.COMPLETED, outcome__isnull=False)),
        succeeded=Count("id", filter=Q(status=Intervention.Status.COMPLETED, outcome=Intervention.Outcome.SUCCEEDED)),
        saved=Sum(
            "revenue_impact",
            filter=Q(outcome=Intervention.Outcome.SUCCEEDED, completed_at__gte=since),
        ),
    )
    saved = float(work["saved"] or Decimal(0))
    annual = float(now["mrr"] or 0) * 12
    return {
        "churnRisk": f"{avg_now:.1f}",
        "churnChange": round(churn_change, 1),
        "customersAtRisk": current["at_risk"],
        "riskChange": round(risk_change),
        "activeInterventions": work["open"],
        "successRate": round(100 * work["succeeded"] / work["decided"]) if work["decided"] else 0,
        "revenueSaved": round(saved / 1000),
        "revenueIncrease": round(100 * saved / annual) if annual else 0,
    }


RANGES = {"30d": (30, 1), "90d": (91, 7), "6m": (6, None), "12m": (12, None)}


def _buckets(range_key: str, today: dt.date) -> list[tuple[str, dt.date, dt.date]]:
    """(label, first day, last day) of each point, oldest first."""
    length, step = RANGES[range_key]
    if step is not None:
        ends = [today - dt.timedelta(days=step * i) for i in range(length // step)][::-1]
        return [(end.strftime("%b %d"), end - dt.timedelta(days=step - 1), end) for end in ends]
    buckets = []
    year, month = today.year, today.month
    for _ in range(length):
        first = dt.date(year, month, 1)
        nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
        buckets.append((first.strftime("%b"), first, min(nxt - dt.timedelta(days=1), today)))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return buckets[::-1]


CHART_EXTRAS = ("churnRate",)  # datasets beyond the contract's two, each only when asked for


def dashboard_chart(*, user: Any, range_key: str = "6m", extras: tuple[str, ...] = ()) -> dict:
    """Churn risk % and MRR per period from daily snapshots (the contract's datasets, in its
    order: the app draws every dataset it gets), plus the `extras` asked for (churn rate %).
    The last point is live."""
    today = timezone.localdate()
    buckets = _buckets(range_key, today)
    rows = (
        _snapshots(user)
        .filter(date__gte=buckets[0][1], date__lte=today)
        .values("date")
        .annotate(
            active=Sum("active_customers"), risk=Sum("risk_sum"), mrr=Sum("mrr_sum"), churned=Sum("churned_customers")
        )
        .order_by("date")
    )
    by_day = {row["date"]: row for row in rows}
    live = _current(user)
    risk: list[float | None] = []
    mrr: list[float | None] = []
    churn_rate: list[float | None] = []
    for _, first, last in buckets:
        days = [day for day in by_day if first <= day <= last]
        if last == today:
            active, avg = live["active"], float(live["avg_risk"] or 0) * 100
            mrr_value = float(live["mrr"] or 0)
        elif days:
            end = by_day[max(days)]
            active = end["active"] or 0
            avg = 100 * (end["risk"] or 0) / active if active else 0
            mrr_value = float(end["mrr"] or 0)
        else:
            risk.append(None)
            mrr.append(None)
            churn_rate.append(None)
            continue
        churned = sum(by_day[day]["churned"] or 0 for day in days)
        start_active = (by_day[min(days)]["active"] or 0) if days else active
        risk.append(round(avg, 1))
        mrr.append(round(mrr_value, 2))
        churn_rate.append(round(100 * churned / start_active, 2) if start_active else 0)
    datasets = [
        {
            "label": "Churn Risk %",
            "data": risk,
            "borderColor": "#DC2626",
            "backgroundColor": "rgba(220, 38, 38, 0.1)",
            "tension": 0.4,
            "fill": True,
        },
        {
            "label": "MRR",
            "data": mrr,
            "borderColor": "#2563EB",
            "backgroundColor": "rgba(37, 99, 235, 0.1)",
            "tension": 0.4,
            "fill": False,
            "yAxisID": "y1",
        },
    ]
    if "churnRate" in extras:
        datasets.append(
            {
                "label": "Churn Rate %",
                "data": churn_rate,
                "borderColor": "#F59E0B",
                "backgroundColor": "rgba(245, 158, 11, 0.1)",
                "tension": 0.4,
                "fill": False,
            }
        )
    return {"labels": [label for label, _, _ in buckets], "datasets": datasets}
