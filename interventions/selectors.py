"""Reads about interventions, scoped to the customers the user may see."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery, Sum

from core.auth.roles import sees_all_customers
from customers.models import Customer
from customers.selectors import customer_get, customer_scope, risk_level, risk_thresholds
from customers.timeline import events_after
from interventions.models import Intervention
from predictions.selectors import latest_prediction


def intervention_scope(*, user: Any) -> QuerySet[Intervention]:
    """Interventions on the customers the user may see (no join at all for book-wide roles)."""
    if sees_all_customers(user):
        return Intervention.objects.all()
    return Intervention.objects.filter(customer__owner_id=user.pk)


def open_interventions_per_assignee(names: list[str]) -> dict[str, int]:
    """Open interventions per assignee name, for the names that have any."""
    rows = (
        Intervention.objects.filter(status__in=Intervention.OPEN_STATUSES, assigned_csm__in=names)
        .values_list("assigned_csm")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def open_intervention_count(customer_id: int) -> int:
    return Intervention.objects.filter(customer_id=customer_id, status__in=Intervention.OPEN_STATUSES).count()


def intervention_events(customer_id: int, cursor: Any, limit: int) -> list[dict]:
    def render(row: Intervention) -> dict:
        if row.activity:
            # A logged touch: what was said matters more than its bookkeeping.
            who = f" by {row.assigned_csm}" if row.assigned_csm else ""
            return {
                "title": f"{row.get_activity_display()} logged{who}",
                "detail": row.notes,
                "ref": {"kind": "intervention", "id": row.pk},
            }
        assigned = f", assigned to {row.assigned_csm}" if row.assigned_csm else ""
        due = f", due {row.due_date:%Y-%m-%d}" if row.due_date and row.status in Intervention.OPEN_STATUSES else ""
        return {
            "title": f"Intervention: {row.type}",
            "detail": f"{row.status}, {row.priority} priority{assigned}{due}",
            "ref": {"kind": "intervention", "id": row.pk},
        }

    return events_after(
        Intervention.objects.filter(customer_id=customer_id),
        event_type="intervention",
        field="created_at",
        cursor=cursor,
        limit=limit,
        render=render,
    )


def _pct(part: float, whole: float) -> float:
    return (100.0 * part / whole) if whole else 0.0


def intervention_analytics(*, user: Any, playbooks: dict | None) -> dict:
    """The app's intervention analytics (snake_case, contract), computed from recorded outcomes.

    `playbooks` is `playbooks.selectors.playbook_analytics` for the same user, shown alongside
    (the caller reads it, since playbooks sit above interventions and import them); None leaves
    the playbook figures out, for a page that shows them elsewhere.

    - success: a completed intervention whose outcome was recorded as succeeded;
    - revenue saved: the recorded revenue impact of succeeded interventions;
    - costs: INTERVENTION_COST per intervention (a setting: CSM time is not tracked yet);
    - retention improvement: percentage points by which customers whose intervention succeeded
      stayed active more often than customers whose intervention failed.
    """
    # Logged touches (a call, a note) are history, not retention work with a cost and an outcome.
    interventions = intervention_scope(user=user).filter(activity="")
    succeeded = Q(outcome=Intervention.Outcome.SUCCEEDED)
    completed = Q(status=Intervention.Status.COMPLETED)
    # Completed with a completion time: their mean time to complete, a negative span as none.
    timed = completed & Q(completed_at__isnull=False)
    span = ExpressionWrapper(F("completed_at") - F("created_at"), output_field=DurationField())
    by_type = list(
        interventions.values("type")
        .annotate(
            total=Count("id"),
            completed=Count("id", filter=completed),
            successful=Count("id", filter=completed & succeeded),
            saved=Sum("revenue_impact", filter=completed & succeeded),
            # Summed in the database (an exact interval): reading every completed intervention's
            # two dates took most of a manager's page time on a large book.
            timed=Count("id", filter=timed),
            time_taken=Sum(span, filter=timed & Q(completed_at__gte=F("created_at"))),
        )
        .order_by("type")
    )

    rows = []
    for item in by_type:
        days = (item["time_taken"] or dt.timedelta(0)).total_seconds() / 86400
        rows.append(
            {
                "type": item["type"],
                "total_interventions": item["total"],
                "successful": item["successful"],
                "success_rate": round(_pct(item["successful"], item["total"]), 1),
                "avg_cost_savings": round((item["saved"] or Decimal(0)) / item["successful"])
                if item["successful"]
                else 0,
                "avg_time_to_complete": round(days / item["timed"]) if item["timed"] else 0,
            }
        )
    rows.sort(key=lambda row: (-row["success_rate"], -row["total_interventions"], row["type"]))

    total = sum(item["total"] for item in by_type)
    completed_count = sum(item["completed"] for item in by_type)
    successful = sum(item["successful"] for item in by_type)
    saved = float(sum((item["saved"] or Decimal(0)) for item in by_type))
    costs = total * settings.INTERVENTION_COST
    success_rate = round(_pct(successful, completed_count))
    roi = round(_pct(saved - costs, costs)) if costs else 0

    customers = customer_scope(user=user).filter(is_active=True, churn_risk__gte=risk_thresholds()[1])
    # The customers with open work, read once (a hashed set), not an EXISTS probe per high-risk customer.
    with_open_work = Intervention.objects.filter(status__in=Intervention.OPEN_STATUSES).values("customer_id")
    high_risk = customers.aggregate(total=Count("id"), covered=Count("id", filter=Q(pk__in=with_open_work)))
    coverage = round(_pct(high_risk["covered"], high_risk["total"]))

    outcomes = (
        interventions.filter(completed, outcome__isnull=False)
        .values("outcome")
        .annotate(
            customers=Count("customer", distinct=True),
            retained=Count("customer", distinct=True, filter=Q(customer__is_active=True)),
        )
    )
    retention = {row["outcome"]: _pct(row["retained"], row["customers"]) for row in outcomes}
    improvement = round(retention.get("succeeded", 0.0) - retention.get("failed", 0.0)) if len(retention) == 2 else 0

    insights = []
    if rows:
        insights.append(f"{rows[0]['type']} interventions show the highest success rate")
    insights.append(f"{coverage}% of high-risk customers have active interventions")
    if costs:
        insights.append(f"Average ROI of {roi}% across {total} interventions")
    insights.append(f"{successful} successful interventions potentially saved ${saved:,.0f}")

    return {
        "overall_metrics": {
            "total_interventions": total,
            "completed_interventions": completed_count,
            "success_rate": success_rate,
            "estimated_revenue_saved": round(saved),
            "estimated_costs": round(costs),
            "roi_percentage": roi,
        },
        "success_rates_by_type": sorted(rows, key=lambda row: row["type"]),
        "retention_analysis": {
            "high_risk_customers": high_risk["total"],
            "high_risk_with_interventions": high_risk["covered"],
            "intervention_coverage": coverage,
            "estimated_retention_improvement": improvement,
        },
        "top_performing_interventions": rows[:5],
        "insights": insights,
        # Playbooks: per playbook and per intervention type, with the holdout comparison (the proof they work).
        **(
            {
                "playbook_performance": playbooks["playbooks"],
                "playbook_performance_by_type": playbooks["by_intervention_type"],
            }
            if playbooks is not None
            else {}
        ),
    }


# Which intervention answers which churn cause (the cause catalogue is predictions/causes.py).
CAUSE_INTERVENTIONS = {
    "Payment problems": "Payment Recovery",
    "Support issues": "Support Escalation",
    "Low satisfaction": "Executive Check-in",
    "Low engagement": "Executive Check-in",
    "Declining usage": "Product Training",
    "Low feature adoption": "Product Training",
    "Onboarding incomplete": "Onboarding Call",
}
DESCRIPTIONS = {
    "Payment Recovery": "Resolve the failed payments with the billing contact",
    "Support Escalation": "Escalate open tickets and follow up personally",
    "Executive Check-in": "Schedule high-level executive outreach",
    "Product Training": "Run a training session on the features the account does not use",
    "Onboarding Call": "Walk the account through setup to first value",
    "Renewal Reminder": "Review value delivered ahead of the renewal",
}
PRIOR_WEIGHT = 5  # outcomes of pseudo-evidence at the overall success rate, so tiny samples don't dominate


# `playbooks.selectors.playbook_analytics_by_type`: book-wide playbook results per intervention
# type (keys lower-cased) for the `kinds` asked. The caller passes it in, since playbooks sit above
# interventions and import them.
PlaybookProof = Callable[..., dict[str, dict]]


@dataclass(frozen=True)
class Recommendation:
    """The intervention to try next for a customer, and why."""

    type: str
    priority: str  # the customer's risk level
    estimated_success: float  # 0-1, the smoothed success rate
    estimated_revenue_saved: float  # a year of the customer's MRR times that rate
    description: str
    reasoning: str


def recommend_intervention(*, user: Any, customer_id: int, playbook_proof: PlaybookProof) -> Recommendation:
    """What has worked for customers like this one, for the causes this customer shows.

    Candidates are the interventions that answer the customer's current causes; each is scored by
    its recorded success rate among customers of the same risk level, smoothed toward the overall
    rate. The estimate of revenue saved is a year of the customer's MRR times that success rate.
    """
    customer = customer_get(user=user, customer_id=customer_id)
    prediction = latest_prediction(customer.pk)
    return recommendation_for(
        customer=customer,
        probability=float(prediction.churn_probability if prediction else customer.churn_risk),
        causes=[
            str(cause.get("cause"))
            for cause in (prediction.top_causes if prediction else [])
            if isinstance(cause, dict)
        ],
        playbook_proof=playbook_proof,
    )


def recommendation_for(
    *, customer: Customer, probability: float, causes: list[str], playbook_proof: PlaybookProof
) -> Recommendation:
    """`recommend_intervention` for a customer the caller has already loaded within the user's
    scope, with its latest probability and cause names (the customer page has them in hand)."""
    level = risk_level(probability)
    candidates = list(dict.fromkeys(CAUSE_INTERVENTIONS[c] for c in causes if c in CAUSE_INTERVENTIONS))
    if not candidates:
        candidates = ["Executive Check-in"] if level == "high" else ["Renewal Reminder"]

    decided = Intervention.objects.filter(status=Intervention.Status.COMPLETED, outcome__isnull=False)
    overall = decided.aggregate(n=Count("id"), won=Count("id", filter=Q(outcome=Intervention.Outcome.SUCCEEDED)))
    base_rate = overall["won"] / overall["n"] if overall["n"] else 0.5
    medium, high = risk_thresholds()
    band = {
        "high": Q(customer_risk__gte=high),
        "medium": Q(customer_risk__gte=medium, customer_risk__lt=high),
    }.get(level, Q(customer_risk__lt=medium))
    # The customer's risk by primary key for each decided intervention of the candidate types (a
    # few thousand lookups), not a join that scans every customer by risk (churn_risk has no index).
    customer_risk = Customer.objects.filter(pk=OuterRef("customer_id")).values("churn_risk")[:1]
    stats = {
        row["type"].lower(): row
        for row in decided.filter(type__in=candidates)
        .alias(customer_risk=Subquery(customer_risk))
        .filter(band)
        .values("type")
        .annotate(n=Count("id"), won=Count("id", filter=Q(outcome=Intervention.Outcome.SUCCEEDED)))
    }

    def smoothed(kind: str) -> tuple[float, int, int]:
        row = stats.get(kind.lower(), {"n": 0, "won": 0})
        return (row["won"] + PRIOR_WEIGHT * base_rate) / (row["n"] + PRIOR_WEIGHT), row["won"], row["n"]

    wanted = {kind.lower() for kind in candidates}
    proof = {kind: row for kind, row in playbook_proof(kinds=wanted).items() if kind in wanted}

    def score(kind: str) -> float:
        # What worked: the recorded success rate, plus the churn a playbook of this type averted
        # versus its holdout (percentage points), when a holdout comparison exists.
        return smoothed(kind)[0] + max(proof.get(kind.lower(), {}).get("churn_reduction_points") or 0, 0) / 100

    best = max(candidates, key=score)
    rate, won, tried = smoothed(best)
    cause_text = f"its top churn cause is {causes[0].lower()}" if causes else f"its churn risk is {level}"
    # With no outcome recorded yet the rates are priors, not results: say so rather than "0 of 0".
    overall_text = f"success rate across all interventions {base_rate:.0%}"
    if tried:
        record = f"{best} succeeded {won} of {tried} times for {level}-risk customers ({overall_text})"
    elif overall["n"]:
        record = f"no {best} for a {level}-risk customer has a recorded outcome yet ({overall_text})"
    else:
        record = "no intervention has a recorded outcome yet"
    return Recommendation(
        type=best,
        priority=level,
        estimated_success=round(rate, 2),
        estimated_revenue_saved=round(float(customer.mrr) * 12 * rate, 2),
        description=DESCRIPTIONS.get(best, best),
        reasoning=f"Recommended because {cause_text}; {record}." + _proof_text(proof.get(best.lower())),
    )


def _proof_text(row: dict | None) -> str:
    if not row or row.get("churn_reduction_points") is None:
        return ""
    return (
        f" Its playbook's customers churned {row['churn_rate']}% vs {row['holdout_churn_rate']}% "
        f"in the holdout ({row['executions']} runs)."
    )
