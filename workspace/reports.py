"""What the Reports page of the admin shows, each figure scoped to what the user may see.

A CSM's every number counts their own portfolio only (`customer_scope`, `intervention_scope`,
`execution_scope`); managers, admins and viewers see the whole book. Each section is one or a few
aggregate queries whatever the size of the book: the customer figures (risk distribution and
revenue at risk by owner, plan and size) come from groups per owner and plan, whose few hundred
rows are then summed in Python: counted live for a CSM, for the whole book as the daily batch
stored them in the portfolio snapshot (the page says when). How each number is computed is
written up in docs/reports.md.
"""

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q
from django.utils import timezone

from core.auth.roles import sees_all_customers
from core.charts import Stack, bar_chart, column_chart, stacked_bar_chart
from customers.selectors import (
    RISK_BINS,
    SIZE_BOUNDS,
    customer_scope,
    risk_level,
    risk_revenue_groups,
    risk_thresholds,
)
from interventions.models import Intervention
from interventions.selectors import intervention_scope
from playbooks.models import Playbook
from playbooks.selectors import OUTCOME_DAYS, playbook_churn_counts
from predictions.models import PortfolioSnapshot
from workspace.selectors import _day_bounds, _name, risk_trend_chart, team_standings

# Account size by MRR (bounds in `customers.selectors.SIZE_BOUNDS`).
SIZE_NAMES = ("Under $200 MRR", "$200–$1,000 MRR", "$1,000–$5,000 MRR", "$5,000+ MRR")
SEGMENTS = tuple((low, high, name) for (low, high), name in zip(SIZE_BOUNDS, SIZE_NAMES, strict=True))
BAR_ROWS = 15  # owners and plans past the top 15 by revenue at risk are summed into "Others"
# Below this many matured enrolments in either group, a churn rate's interval spans tens of
# points and the comparison says nothing yet.
MIN_MATURED_PER_GROUP = 30
CONFIDENCE = 0.95
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


# --- Interval math ------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson's score interval for a proportion successes/n (0..1). Unlike the normal
    approximation it stays inside [0, 1] and keeps its coverage with small n or rates near 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10, 1998) for p1 - p2, built from each
    proportion's Wilson interval; both groups need n > 0."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


# --- Customers: risk distribution and revenue at risk --------------------------------------------


def customer_groups(*, user: Any) -> tuple[list[dict], dt.datetime | None]:
    """Active customers the user may see per (owner, plan): how many in each 10-point bin of risk
    (`band_0`…`band_9`) and their MRR x churn probability in each size (`size_0`…), with when they
    were counted (None: now).

    A CSM's portfolio is counted live (one scan of their rows). The whole book comes from the
    portfolio snapshot the daily batch took (one read of ~40 rows): counted live it is a scan of
    the customers table by churn risk, which has no index on purpose (ADR 0005). Before the batch
    has stored these figures, the book is counted live too."""
    if sees_all_customers(user):
        standings = team_standings()
        if standings and all(row.report_groups is not None for row in standings):
            return _stored_groups(standings), standings[0].taken_at
    return risk_revenue_groups(customer_scope(user=user).filter(is_active=True)), None


def _stored_groups(standings: list[PortfolioSnapshot]) -> list[dict]:
    """The snapshot's (owner, plan) groups in the shape `risk_revenue_groups` returns."""
    return [
        {
            "owner_id": row.owner_id,
            "plan": group["plan"],
            **{f"band_{i}": count for i, count in enumerate(group["bands"])},
            **{f"size_{i}": None if value is None else Decimal(value) for i, value in enumerate(group["sizes"])},
        }
        for row in standings
        for group in row.report_groups or []
    ]


def _cents(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(Decimal("0.01"))


def risk_distribution(groups: list[dict]) -> dict:
    """Active customers per 10-point bin of churn risk, each bin coloured by the risk level of its
    midpoint (the levels' thresholds come from the model that wrote the scores)."""
    counts = [sum(row[f"band_{i}"] for row in groups) for i in range(RISK_BINS)]
    thresholds = risk_thresholds()
    levels = [risk_level((i + 0.5) / RISK_BINS, thresholds) for i in range(RISK_BINS)]
    labels = [f"{i * 10}–{(i + 1) * 10}%" for i in range(RISK_BINS)]
    shown = [level for level in ("low", "medium", "high") if level in levels]
    return {
        "counts": counts,
        "labels": labels,
        "levels": levels,
        "thresholds": [round(t * 100) for t in thresholds],
        "total": sum(counts),
        "svg": column_chart(
            labels=labels,
            values=counts,
            label="Active customers by churn risk",
            css=[f"cs-bar-{level}" for level in levels],
            legend=[(f"cs-bar-{level}", f"{level.capitalize()} risk") for level in shown],
        )
        if any(counts)
        else None,
    }


def _ranked_bars(totals: dict[Any, Decimal], names: dict[Any, str], label: str, limit: int = BAR_ROWS) -> dict:
    """Bars of revenue at risk, largest first; past `limit`, the rest summed into one "Others" bar."""
    ranked = sorted(totals.items(), key=lambda item: (-item[1], names[item[0]]))
    rows = [(names[key], _cents(value), key) for key, value in ranked[:limit]]
    if len(ranked) > limit:
        rest = sum((value for _, value in ranked[limit:]), Decimal(0))
        rows.append((f"Others ({len(ranked) - limit})", _cents(rest), None))
    return {
        "rows": [{"name": name, "revenue_at_risk": value, "key": key} for name, value, key in rows],
        "svg": bar_chart(
            labels=[name for name, _, _ in rows], values=[float(value) for _, value, _ in rows], label=label, unit="$"
        )
        if rows
        else None,
    }


def owner_names(keys: set[int | None]) -> dict[int | None, str]:
    """The display name of every owner ("Unassigned" for None). One query."""
    users = {u.pk: u for u in get_user_model().objects.filter(pk__in=[k for k in keys if k is not None])}
    return {key: _name(users.get(key)) if key is not None else "Unassigned" for key in keys}


def revenue_at_risk(groups: list[dict], names: dict[int | None, str]) -> dict:
    """MRR x churn probability of the active customers, summed by owner, by plan and by size."""
    by_owner: dict[int | None, Decimal] = defaultdict(Decimal)
    by_plan: dict[str, Decimal] = defaultdict(Decimal)
    by_segment: dict[int, Decimal] = defaultdict(Decimal)
    for row in groups:
        for i in range(len(SEGMENTS)):
            value = row[f"size_{i}"] or Decimal(0)
            by_owner[row["owner_id"]] += value
            by_plan[row["plan"]] += value
            by_segment[i] += value
    plan_names = {plan: plan or "No plan" for plan in by_plan}
    segment_names = {i: name for i, (_, _, name) in enumerate(SEGMENTS)}
    # Sizes keep their natural order (smallest first), with an empty size shown as $0.
    segments = [(segment_names[i], _cents(by_segment.get(i))) for i in range(len(SEGMENTS))]
    return {
        "total": _cents(sum(by_owner.values(), Decimal(0))),
        "by_owner": _ranked_bars(by_owner, names, "Revenue at risk by CSM"),
        "by_plan": _ranked_bars(by_plan, plan_names, "Revenue at risk by plan"),
        "by_segment": {
            "rows": [{"name": name, "revenue_at_risk": value} for name, value in segments],
            "svg": bar_chart(
                labels=[name for name, _ in segments],
                values=[float(value) for _, value in segments],
                label="Revenue at risk by account size",
                unit="$",
            )
            if any(value for _, value in segments)
            else None,
        },
    }


# --- Work ---------------------------------------------------------------------------------------


def open_work(*, user: Any, now: dt.datetime) -> dict[int | None, dict]:
    """Open and overdue work per CSM (the owner of the work's customer; None: unassigned), as
    the cockpit's team workload counts it, within the user's scope. One query."""
    start, _ = _day_bounds(now)
    return {
        row["owner"]: row
        for row in intervention_scope(user=user)
        .filter(status__in=Intervention.OPEN_STATUSES)
        .values(owner=F("customer__owner"))
        .annotate(open=Count("id"), overdue=Count("id", filter=Q(due_date__lt=start)))
        .order_by()
    }


def workload(counts: dict[int | None, dict], names: dict[int | None, str]) -> dict:
    """A bar per CSM with active customers or open work (only the user for a CSM): overdue, and
    open but not overdue."""
    rows = [
        {
            "owner": names[key],
            "open": counts.get(key, {}).get("open", 0),
            "overdue": counts.get(key, {}).get("overdue", 0),
        }
        for key in sorted(names, key=lambda key: (key is None, names[key]))
    ]
    return {
        "rows": rows,
        "open": sum(row["open"] for row in rows),
        "overdue": sum(row["overdue"] for row in rows),
        "svg": stacked_bar_chart(
            labels=[row["owner"] for row in rows],
            stacks=[
                Stack("Overdue", "cs-bar-high", [row["overdue"] for row in rows]),
                Stack("Open, not overdue", "cs-bar-default", [row["open"] - row["overdue"] for row in rows]),
            ],
            label="Open and overdue work per CSM",
        )
        if any(row["open"] for row in rows)
        else None,
    }


OUTCOME_STACKS = (
    ("succeeded", "Succeeded", "cs-bar-low"),
    ("failed", "Failed", "cs-bar-high"),
    ("no_outcome", "Completed, outcome not recorded", "cs-bar-muted"),
    ("open", "Open", "cs-bar-default"),
    ("cancelled", "Cancelled", "cs-bar-cancelled"),
)


def intervention_outcomes(*, user: Any) -> dict:
    """Retention work (logged calls and notes left out, as in the API's analytics) per type:
    succeeded, failed, completed with no outcome recorded, open, cancelled. One query."""
    completed = Q(status=Intervention.Status.COMPLETED)
    rows = list(
        intervention_scope(user=user)
        .filter(activity="")
        .values("type")
        .annotate(
            total=Count("id"),
            succeeded=Count("id", filter=completed & Q(outcome=Intervention.Outcome.SUCCEEDED)),
            failed=Count("id", filter=completed & Q(outcome=Intervention.Outcome.FAILED)),
            no_outcome=Count("id", filter=completed & Q(outcome__isnull=True)),
            open=Count("id", filter=Q(status__in=Intervention.OPEN_STATUSES)),
            cancelled=Count("id", filter=Q(status=Intervention.Status.CANCELLED)),
        )
        .order_by("-total", "type")
    )
    for row in rows:
        decided = row["succeeded"] + row["failed"]
        row["success_rate"] = round(100 * row["succeeded"] / decided, 1) if decided else None
    return {
        "rows": rows,
        "svg": stacked_bar_chart(
            labels=[row["type"] for row in rows],
            stacks=[Stack(name, css, [row[key] for row in rows]) for key, name, css in OUTCOME_STACKS],
            label="Interventions by type and outcome",
        )
        if rows
        else None,
    }


# --- Playbooks against their holdout ------------------------------------------------------------


@dataclass(frozen=True)
class PlaybookEffect:
    """One playbook's churn among enrolled and holdout customers whose outcome is known."""

    playbook_id: int
    name: str
    holdout_share: float
    enrolled: int  # matured enrolments (outcome known)
    enrolled_churned: int
    holdout: int
    holdout_churned: int
    started: int  # every enrolment, matured or not, both groups

    @property
    def enough_data(self) -> bool:
        return min(self.enrolled, self.holdout) >= MIN_MATURED_PER_GROUP

    @property
    def enrolled_rate(self) -> float | None:
        return 100 * self.enrolled_churned / self.enrolled if self.enrolled else None

    @property
    def holdout_rate(self) -> float | None:
        return 100 * self.holdout_churned / self.holdout if self.holdout else None

    @property
    def averted_points(self) -> float | None:
        """Holdout churn minus enrolled churn, percentage points (positive: the playbook helps)."""
        if not (self.enrolled and self.holdout):
            return None
        return self.holdout_rate - self.enrolled_rate  # type: ignore[operator]

    @property
    def interval(self) -> tuple[float, float] | None:
        """95 % Newcombe interval of `averted_points`, in percentage points."""
        if not (self.enrolled and self.holdout):
            return None
        low, high = newcombe_interval(self.holdout_churned, self.holdout, self.enrolled_churned, self.enrolled)
        return 100 * low, 100 * high

    @property
    def verdict(self) -> str:
        if not self.enough_data:
            return "not enough data yet"
        low, high = self.interval  # type: ignore[misc]
        if low > 0:
            return "less churn than the holdout"
        if high < 0:
            return "more churn than the holdout"
        return "no clear difference yet"

    @property
    def shortfall(self) -> str:
        """What is missing, e.g. "not enough data yet (n=12 enrolled, 1 holdout; needs 30 each)"."""
        if self.holdout_share <= 0 and not self.holdout:
            return "no holdout group: give the playbook a holdout share to measure it"
        return (
            f"not enough data yet (n={self.enrolled} enrolled, {self.holdout} holdout; "
            f"needs {MIN_MATURED_PER_GROUP} each)"
        )


def playbook_effects(*, user: Any, now: dt.datetime) -> dict:
    """Per playbook, churn of the enrolled against the holdout, counted as the API's playbook
    analytics count it (`playbooks.selectors.playbook_churn_counts`): an enrolment has matured once
    it started OUTCOME_DAYS ago or its customer churned; it churned if the customer churned on or
    after its start. Two queries."""
    arms = playbook_churn_counts(user=user, now=now)
    empty = {"started": 0, "matured": 0, "churned": 0}
    effects = []
    for pk, name, share in Playbook.objects.order_by("name", "pk").values_list("pk", "name", "holdout_share"):
        enrolled, holdout = arms.get((pk, False), empty), arms.get((pk, True), empty)
        effects.append(
            PlaybookEffect(
                playbook_id=pk,
                name=name,
                holdout_share=share,
                enrolled=enrolled["matured"],
                enrolled_churned=enrolled["churned"],
                holdout=holdout["matured"],
                holdout_churned=holdout["churned"],
                started=enrolled["started"] + holdout["started"],
            )
        )
    measured = [e for e in effects if e.enough_data]
    labels, values, classes, titles, intervals = [], [], [], [], []
    for effect in measured:
        for group, churned, n, css in (
            ("enrolled", effect.enrolled_churned, effect.enrolled, "cs-bar-default"),
            ("holdout", effect.holdout_churned, effect.holdout, "cs-bar-muted"),
        ):
            rate = 100 * churned / n
            low, high = wilson_interval(churned, n)
            labels.append(f"{effect.name} · {group}")
            values.append(rate)
            classes.append(css)
            intervals.append((100 * low, 100 * high))
            titles.append(f"{effect.name}, {group}: {churned} of {n} churned ({rate:.1f}%)")
    return {
        "rows": effects,
        "minimum": MIN_MATURED_PER_GROUP,
        "outcome_days": OUTCOME_DAYS,
        "svg": bar_chart(
            labels=labels,
            values=values,
            label="Churn rate, enrolled against holdout, with 95% intervals",
            unit="%",
            css=classes,
            titles=titles,
            intervals=intervals,
        )
        if measured
        else None,
    }


# --- The page -----------------------------------------------------------------------------------


def reports(*, user: Any, now: dt.datetime | None = None) -> dict:
    """Everything the Reports page shows, for a CSM (their portfolio) or the team (the book)."""
    now = now or timezone.now()
    groups, counted_at = customer_groups(user=user)
    work = open_work(user=user, now=now)
    names = owner_names({row["owner_id"] for row in groups} | set(work))
    return {
        "team": sees_all_customers(user),
        "counted_at": counted_at,
        "today": timezone.localdate(now),
        "trend": risk_trend_chart(user=user, now=now),
        "distribution": risk_distribution(groups),
        "revenue": revenue_at_risk(groups, names),
        "workload": workload(work, names),
        "playbooks": playbook_effects(user=user, now=now),
        "outcomes": intervention_outcomes(user=user),
    }
