"""What the CSM's workspace in the admin shows: the home (cockpit) and the customer 360.

Cross-app reads, like `dashboard`: each figure goes through the owning app's scoped
selectors, so a CSM sees only their portfolio (charts included) and managers, admins and viewers
the whole book. Every read is a fixed number of queries whatever the size of the book.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from alerts.models import Alert
from alerts.selectors import alert_scope
from core.auth.roles import can_write, sees_all_customers
from core.charts import Series, line_chart, nice_max
from customers.models import Customer, NpsResponse, UserSession
from customers.selectors import customer_scope, risk_level, risk_thresholds
from customers.timeline import customer_timeline
from interventions.models import Intervention
from interventions.selectors import intervention_scope, recommendation_for
from playbooks.models import Playbook
from playbooks.selectors import playbook_analytics_by_type
from predictions.models import ChurnPrediction, PortfolioSnapshot, PredictionRun

AT_RISK_ROWS = 15
TASK_ROWS = 15
ALERT_ROWS = 8
TREND_DAYS = 90  # the book's risk trend on the home
CUSTOMER_TREND_DAYS = 84  # twelve weeks on the customer page
TIMELINE_ROWS = 40
# Timeline filters on the customer page: query value -> (label, event types).
TIMELINE_FILTERS = {
    "work": ("Activities & work", {"intervention"}),
    "sessions": ("Sessions", {"session_day"}),
    "tickets": ("Tickets", {"support_ticket"}),
    "nps": ("NPS", {"nps_response"}),
    "billing": ("Billing", {"billing"}),
    "alerts": ("Alerts", {"alert"}),
    "risk": ("Risk scores", {"prediction"}),
}


def _name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "Unassigned"


def _json(value: Any) -> Any:
    """A JSON subquery's value: SQLite hands it back as text."""
    return json.loads(value) if isinstance(value, str) else value


def cause_text(cause: dict) -> str:
    """A cause in plain language: "Actions per session (30 days): 1.6 — retained customers: 2.6"."""
    value, factor = str(cause.get("value") or ""), str(cause.get("factor") or "")
    if ":" in value or not factor:
        return value or factor
    return f"{factor}: {value}" if value else factor


def _latest_prediction(field: str) -> Subquery:
    return Subquery(
        ChurnPrediction.objects.filter(customer=OuterRef("pk")).order_by("-prediction_date", "-id").values(field)[:1]
    )


def _day_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    today = timezone.localdate(now)
    start = timezone.make_aware(dt.datetime.combine(today, dt.time.min))
    return start, start + dt.timedelta(days=1)


# --- Home ---------------------------------------------------------------------------------------


def at_risk_customers(
    *,
    user: Any,
    now: dt.datetime,
    limit: int = AT_RISK_ROWS,
    totals: dict | None = None,
    among: list[int] | None = None,
) -> dict:
    """The riskiest active customers (whatever their level: a calm book still has a top of the
    list to call first), with what a CSM decides on:
    risk now and a week ago, the top cause, MRR and the last touch (completed work or a logged
    activity). Two queries, one when the `totals` (high, medium, mrr_at_risk, active) are given.

    `among`: the candidates to rank (the owners' riskiest when the batch counted the book), so a
    whole book is not scanned for its top rows; they are ranked by their risk now."""
    thresholds = risk_thresholds()
    medium, high = thresholds
    active = customer_scope(user=user).filter(is_active=True)
    week_ago = now - dt.timedelta(days=7)
    risk_then = (
        ChurnPrediction.objects.filter(customer=OuterRef("pk"), prediction_date__lte=week_ago)
        .order_by("-prediction_date", "-id")
        .values("churn_probability")[:1]
    )
    last_touch = (
        Intervention.objects.filter(customer=OuterRef("pk"), status=Intervention.Status.COMPLETED)
        .order_by()
        .values("customer")
        .annotate(at=Max("completed_at"))
        .values("at")
    )
    # No index on churn_risk (scoring keeps its updates HOT, see Customer.Meta): the top rows are
    # picked from a narrow scan (id and risk only), then only those are joined and annotated.
    candidates = active if among is None else active.filter(pk__in=among)
    top = candidates.order_by("-churn_risk", "id").values("pk")[:limit]
    rows = list(
        Customer.objects.filter(pk__in=top)
        .select_related("owner")
        .annotate(
            risk_then=Subquery(risk_then), causes=_latest_prediction("top_causes"), last_touch=Subquery(last_touch)
        )
        .order_by("-churn_risk", "id")
    )
    if totals is None:
        totals = active.aggregate(
            high=Count("id", filter=Q(churn_risk__gte=high)),
            medium=Count("id", filter=Q(churn_risk__gte=medium, churn_risk__lt=high)),
            mrr_at_risk=Sum("mrr", filter=Q(churn_risk__gte=medium)),
            active=Count("id"),
        )
    customers = []
    for row in rows:
        risk = float(row.churn_risk)
        causes = [c for c in _json(row.causes) or [] if isinstance(c, dict)]
        change = None if row.risk_then is None else round((risk - float(row.risk_then)) * 100, 1)
        customers.append(
            {
                "id": row.pk,
                "name": row.name,
                "company": row.company,
                "risk": round(risk * 100, 1),
                "level": risk_level(risk, thresholds),
                "change": change,
                "cause": causes[0].get("cause", "") if causes else "",
                "cause_text": cause_text(causes[0]) if causes else "",
                "mrr": row.mrr,
                "last_touch": row.last_touch,
                "owner": _name(row.owner),
            }
        )
    return {"rows": customers, **totals}


def due_work(*, user: Any, now: dt.datetime, limit: int = TASK_ROWS) -> dict:
    """Open interventions due today or overdue, oldest due first. Two queries."""
    start, end = _day_bounds(now)
    open_work = intervention_scope(user=user).filter(status__in=Intervention.OPEN_STATUSES)
    rows = list(
        open_work.filter(due_date__lt=end)
        .select_related("customer", "customer__owner")
        .order_by("due_date", "id")[:limit]
    )
    counts = open_work.aggregate(
        overdue=Count("id", filter=Q(due_date__lt=start)),
        today=Count("id", filter=Q(due_date__gte=start, due_date__lt=end)),
        open=Count("id"),
    )
    tasks = [
        {
            "id": row.pk,
            "type": row.type,
            "customer_id": row.customer_id,
            "customer": row.customer.name,
            "due": row.due_date,
            "overdue": row.due_date is not None and row.due_date < start,
            "priority": row.priority,
            "owner": _name(row.customer.owner),
        }
        for row in rows
    ]
    return {"rows": tasks, **counts}


def new_alerts(*, user: Any, limit: int = ALERT_ROWS) -> dict:
    """Open alerts, newest first. Two queries."""
    open_alerts = alert_scope(user=user).filter(status=Alert.Status.OPEN)
    rows = list(open_alerts.select_related("customer").order_by("-created_at", "-id")[:limit])
    return {"rows": rows, "open": open_alerts.count()}


def team_standings() -> list[PortfolioSnapshot]:
    """The portfolio snapshot rows of the latest day the batch counted the book (empty before it
    first did): the team home's customer figures. One query."""
    counted = PortfolioSnapshot.objects.filter(taken_at__isnull=False)
    latest = counted.order_by("-date").values("date")[:1]
    return list(counted.filter(date=Subquery(latest)))


def team_workload(*, now: dt.datetime, standings: list[PortfolioSnapshot] | None = None) -> list[dict]:
    """Per CSM (owner): active customers, high risk, at risk (medium or high), MRR at risk, open and
    overdue work. The customer figures come from `standings` when given (the batch's count: a
    live count scans the whole customers table), else from the customers. Three queries, two
    with standings."""
    start, _ = _day_bounds(now)
    book: dict[int | None, Mapping[str, Any]]
    if standings:
        book = {
            row.owner_id: {
                "active": row.active_customers,
                "high": row.at_risk_customers,
                "at_risk": row.at_risk_customers + row.medium_risk_customers,
                "mrr_at_risk": row.mrr_at_risk,
            }
            for row in standings
            if row.active_customers
        }
    else:
        medium, high = risk_thresholds()
        book = {
            row["owner"]: row
            for row in Customer.objects.filter(is_active=True)
            .values("owner")
            .annotate(
                active=Count("id"),
                high=Count("id", filter=Q(churn_risk__gte=high)),
                at_risk=Count("id", filter=Q(churn_risk__gte=medium)),
                mrr_at_risk=Sum("mrr", filter=Q(churn_risk__gte=medium)),
            )
            .order_by()
        }
    work: dict[int | None, Mapping[str, Any]] = {
        row["owner"]: row
        for row in Intervention.objects.filter(status__in=Intervention.OPEN_STATUSES)
        .values(owner=F("customer__owner"))
        .annotate(open=Count("id"), overdue=Count("id", filter=Q(due_date__lt=start)))
        .order_by()
    }
    owner_ids = {key for key in (*book, *work) if key is not None}
    users = {user.pk: user for user in get_user_model().objects.filter(pk__in=owner_ids)}
    rows = []
    for key in sorted(set(book) | set(work), key=lambda k: (k is None, _name(users.get(k)) if k else "")):
        counts: Mapping[str, Any] = book.get(key, {})
        tasks: Mapping[str, Any] = work.get(key, {})
        rows.append(
            {
                "owner_id": key,
                "owner": _name(users.get(key)) if key is not None else "Unassigned",
                "active": counts.get("active", 0),
                "high": counts.get("high", 0),
                "at_risk": counts.get("at_risk", 0),
                "mrr_at_risk": counts.get("mrr_at_risk") or 0,
                "open": tasks.get("open", 0),
                "overdue": tasks.get("overdue", 0),
            }
        )
    return rows


def risk_trend_chart(*, user: Any, now: dt.datetime, days: int = TREND_DAYS) -> dict:
    """The book's (or a CSM's portfolio's) average risk and share at risk per day from the daily
    portfolio snapshots, with the days the scoring model changed marked."""
    today = timezone.localdate(now)
    start = today - dt.timedelta(days=days)
    snapshots = PortfolioSnapshot.objects.filter(date__gte=start, date__lte=today)
    team = sees_all_customers(user)
    if not team:
        snapshots = snapshots.filter(owner_id=user.pk)
    daily = list(
        snapshots.values("date")
        .annotate(active=Sum("active_customers"), at_risk=Sum("at_risk_customers"), risk_sum=Sum("risk_sum"))
        .order_by("date")
    )
    # A model's first completed batch is the day the book's scores moved to it. Marked for a CSM
    # too: their portfolio's line jumps on that day as well, and the model is no customer data.
    # The book's first model is no switch (`score_history` draws the past with it).
    firsts = (
        PredictionRun.objects.filter(trigger=PredictionRun.Trigger.BATCH, status=PredictionRun.Status.COMPLETED)
        .values("model_version__version")
        .annotate(first=Min("started_at"))
        .order_by("first")
    )
    markers = [(timezone.localdate(row["first"]), f"model {row['model_version__version']}") for row in firsts[1:]]
    average = Series("Average churn risk", "cs-risk", unit="%")
    share = Series("Share at high risk", "cs-share", unit="%")
    for row in daily:
        active = row["active"] or 0
        average.points.append((row["date"], 100 * row["risk_sum"] / active if active else None))
        share.points.append((row["date"], 100 * row["at_risk"] / active if active else None))
    latest = daily[-1] if daily else None
    return {
        "svg": line_chart(
            series=[average, share],
            start=start,
            end=today,
            label="Churn risk over the last 90 days",
            markers=markers,
            y_max=nice_max([v for _, v in average.points + share.points]),
        )
        if daily
        else None,
        "latest": latest,
        "markers": [m for m in markers if start <= m[0] <= today],
    }


def book_totals(workload: list[dict]) -> dict:
    """The whole book's risk figures, summed from the team's workload rows (one scan of the book, not two)."""
    high = sum(row["high"] for row in workload)
    return {
        "high": high,
        "medium": sum(row["at_risk"] for row in workload) - high,
        "mrr_at_risk": sum(row["mrr_at_risk"] for row in workload),
        "active": sum(row["active"] for row in workload),
    }


def cockpit(*, user: Any, now: dt.datetime | None = None) -> dict:
    """Everything the home shows, for a CSM (their portfolio) or a manager (the team)."""
    now = now or timezone.now()
    team = sees_all_customers(user)
    # A CSM's portfolio is counted live (its rows come by index); the whole book as the batch
    # last counted it, when it has (the page says when).
    standings = team_standings() if team else []
    workload = team_workload(now=now, standings=standings) if team else None
    among = [pk for row in standings for pk in row.riskiest_customer_ids or []] if standings else None
    return {
        "team": team,
        "can_write": can_write(user),
        "counted_at": standings[0].taken_at if standings else None,
        "at_risk": at_risk_customers(
            user=user, now=now, totals=book_totals(workload) if workload is not None else None, among=among
        ),
        "work": due_work(user=user, now=now),
        "alerts": new_alerts(user=user),
        "workload": workload,
        "trend": risk_trend_chart(user=user, now=now),
        "today": timezone.localdate(now),
    }


# --- Customer 360 -------------------------------------------------------------------------------


def customer_trend_chart(*, customer: Customer, now: dt.datetime, days: int = CUSTOMER_TREND_DAYS) -> dict:
    """Risk % and health of one customer over twelve weeks, from its stored predictions."""
    today = timezone.localdate(now)
    start = today - dt.timedelta(days=days)
    since = timezone.make_aware(dt.datetime.combine(start, dt.time.min))
    rows = list(
        ChurnPrediction.objects.filter(customer=customer, prediction_date__gte=since)
        .order_by("prediction_date", "id")
        .values_list("prediction_date", "churn_probability", "health_score")
    )
    risk = Series("Churn risk", "cs-risk", unit="%")
    health = Series("Health", "cs-health")
    for at, probability, score in rows:
        day = timezone.localdate(at)
        risk.points.append((day, float(probability) * 100))
        health.points.append((day, float(score) if score is not None else None))
    return {
        "svg": line_chart(series=[risk, health], start=start, end=today, label="Churn risk and health, 12 weeks")
        if rows
        else None,
        "points": len(rows),
    }


def session_days(*, customer_id: int, since: dt.datetime) -> list[dict]:
    """The customer's sessions since `since`, one timeline event per day (count and pages). One query."""
    days = (
        UserSession.objects.filter(customer_id=customer_id, started_at__gte=since)
        .annotate(day=TruncDate("started_at"))
        .values("day")
        .annotate(n=Count("id"), pages=Sum("pages_viewed"), last=Max("started_at"))
        .order_by("-day")
    )
    return [
        {
            "type": "session_day",
            "at": row["last"],
            "title": f"{row['n']} session{'s' if row['n'] != 1 else ''}, {row['pages'] or 0} pages viewed",
            "detail": "",
            "ref": {"kind": "session", "id": None},
        }
        for row in days
    ]


def timeline(*, customer: Customer, now: dt.datetime, show: str | None, limit: int = TIMELINE_ROWS) -> dict:
    """The merged timeline of the customer page (newest first), sessions summarised per day."""
    wanted = TIMELINE_FILTERS[show][1] if show in TIMELINE_FILTERS else None
    other_types = {t for _, types in TIMELINE_FILTERS.values() for t in types} - {"session_day"}
    if wanted is not None:
        other_types &= wanted
    events: list[dict] = []
    full = False
    if other_types:
        events, cursor = customer_timeline(customer_id=customer.pk, cursor=None, limit=limit, types=other_types)
        full = cursor is not None
    if wanted is None or "session_day" in wanted:
        # Sessions as far back as the other events reach (a month at least), one row a day.
        oldest = events[-1]["at"] if events and full else now - dt.timedelta(days=90)
        since = min(oldest, now - dt.timedelta(days=30))
        events = sorted(
            [*events, *session_days(customer_id=customer.pk, since=since)], key=lambda e: e["at"], reverse=True
        )
    return {
        "events": events[:limit],
        "filters": [(key, label) for key, (label, _) in TIMELINE_FILTERS.items()],
        "show": show if show in TIMELINE_FILTERS else "",
    }


def customer_360(*, user: Any, customer: Customer, now: dt.datetime | None = None, show: str | None = None) -> dict:
    """The top of the customer page: risk, health, trend, causes in plain language, the
    recommended next action (and a playbook that does it), the latest NPS, open work, timeline."""
    now = now or timezone.now()
    thresholds = risk_thresholds()
    prediction = ChurnPrediction.objects.filter(customer=customer).order_by("-prediction_date", "-id").first()
    causes = []
    for cause in (prediction.top_causes if prediction else []) or []:
        if isinstance(cause, dict):
            causes.append(
                {
                    "cause": cause.get("cause", ""),
                    "text": cause_text(cause),
                    "impact": round(100 * float(cause.get("impact") or 0)),
                }
            )
    # The customer came through the user's scope (the admin's get_object), with its latest score.
    recommendation = recommendation_for(
        customer=customer,
        probability=float(prediction.churn_probability) if prediction else float(customer.churn_risk),
        causes=[cause["cause"] for cause in causes if cause["cause"]],
        playbook_proof=playbook_analytics_by_type,
    )
    playbook = (
        Playbook.objects.filter(is_active=True, intervention_type__iexact=recommendation.type).order_by("pk").first()
    )
    nps = NpsResponse.objects.filter(customer=customer).order_by("-responded_at", "-id").first()
    open_work = list(
        Intervention.objects.filter(customer=customer, status__in=Intervention.OPEN_STATUSES).order_by(
            F("due_date").asc(nulls_last=True), "-created_at", "-id"
        )[:10]
    )
    start, _ = _day_bounds(now)
    risk = float(customer.churn_risk)
    return {
        "risk": round(risk * 100, 1),
        "level": risk_level(risk, thresholds),
        "health": customer.health_score,
        "owner": _name(customer.owner),
        "prediction": prediction,
        "causes": causes,
        "recommendation": recommendation,
        "playbook": playbook,
        "nps": nps,
        "open_work": [{"row": row, "overdue": bool(row.due_date and row.due_date < start)} for row in open_work],
        "trend": customer_trend_chart(customer=customer, now=now),
        "timeline": timeline(customer=customer, now=now, show=show),
    }
