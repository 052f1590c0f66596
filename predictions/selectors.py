"""Reads about predictions and churn causes, scoped to what the user may see."""

import json
from collections import Counter
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from churnshield.auth.roles import sees_all_customers
from customers.models import Customer
from customers.selectors import customer_scope, iso
from customers.timeline import events_after
from predictions.models import ChurnCause, ChurnPrediction


def latest_prediction_json(customer_id: int) -> dict | None:
    prediction = ChurnPrediction.objects.filter(customer_id=customer_id).order_by("-prediction_date", "-id").first()
    if prediction is None:
        return None
    return {
        "churnProbability": float(prediction.churn_probability),
        "riskLevel": prediction.risk_level,
        "topCauses": prediction.top_causes,
        "predictionDate": iso(prediction.prediction_date),
        "modelVersion": prediction.model_version,
    }


def prediction_events(customer_id: int, cursor: Any, limit: int) -> list[dict]:
    def render(row: ChurnPrediction) -> dict:
        factors = [str(cause.get("factor", "")) for cause in row.top_causes[:3] if isinstance(cause, dict)]
        return {
            "title": f"Churn risk {float(row.churn_probability) * 100:.1f}% ({row.risk_level})",
            "detail": ", ".join(factor for factor in factors if factor),
            "ref": {"kind": "prediction", "id": row.pk},
        }

    return events_after(
        ChurnPrediction.objects.filter(customer_id=customer_id),
        event_type="prediction",
        field="prediction_date",
        cursor=cursor,
        limit=limit,
        render=render,
    )


def cause_impact(percent: float) -> str:
    if percent >= 30:
        return ChurnCause.Impact.HIGH
    if percent >= 10:
        return ChurnCause.Impact.MEDIUM
    return ChurnCause.Impact.LOW


def count_latest_causes(customers: QuerySet[Customer]) -> tuple[Counter[str], int]:
    """How many of `customers` have each cause in their latest prediction, and how many there are."""
    latest = (
        ChurnPrediction.objects.filter(customer=OuterRef("pk"))
        .order_by("-prediction_date", "-id")
        .values("top_causes")[:1]
    )
    counts: Counter[str] = Counter()
    total = 0
    for top_causes in (
        customers.annotate(latest_causes=Subquery(latest))
        .values_list("latest_causes", flat=True)
        .iterator(chunk_size=5000)
    ):
        total += 1
        if isinstance(top_causes, str):  # SQLite hands back a subquery's JSON as text
            top_causes = json.loads(top_causes)
        counts.update({cause.get("cause") for cause in top_causes or [] if isinstance(cause, dict)})
    return counts, total


def churn_cause_rows(*, user: Any) -> list[dict]:
    """The aggregated churn causes the user may see.

    Managers, admins and viewers read the `churn_causes` table (the whole book of business,
    refreshed by the scoring batch). For a CSM the same causes are counted over their own
    portfolio from each customer's latest prediction, so the figures never include accounts
    they may not see.
    """
    causes = list(ChurnCause.objects.order_by("-count", "id"))
    if sees_all_customers(user):
        return [
            {"id": c.pk, "cause": c.cause, "count": c.count, "percent": c.percent, "impact": c.impact} for c in causes
        ]
    counts, total = count_latest_causes(customer_scope(user=user).filter(is_active=True))
    rows = []
    for cause in causes:
        count = counts.get(cause.cause, 0)
        percent = round(100 * count / total) if total else 0
        rows.append(
            {"id": cause.pk, "cause": cause.cause, "count": count, "percent": percent, "impact": cause_impact(percent)}
        )
    rows.sort(key=lambda row: (-row["count"], row["id"]))
    return rows
