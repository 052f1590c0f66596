"""Reads about playbooks: scoped executions, the dry run, and the proof (analytics)."""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (
    Count,
    DecimalField,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
)
from django.utils import timezone

from core.auth.roles import sees_all_customers
from customers.models import Customer
from customers.selectors import customer_scope
from playbooks import rules, steps
from playbooks.definitions import duration_seconds, next_key, render_template
from playbooks.models import OUTCOME_DAYS, EmailReview, Playbook, PlaybookExecution, PlaybookStepRun, TriggerRule
from playbooks.rules import eligible_customer_ids

DRY_RUN_LIMIT = 200


def execution_scope(*, user: Any) -> QuerySet[PlaybookExecution]:
    if sees_all_customers(user):
        return PlaybookExecution.objects.all()
    return PlaybookExecution.objects.filter(customer__owner_id=user.pk)


def playbook_list() -> QuerySet[Playbook]:
    return Playbook.objects.prefetch_related("rules").order_by("name")


def playbook_export(playbook: Playbook) -> dict:
    """The JSON document `playbooks_import` reads back (definitions live in git)."""
    return {
        "name": playbook.name,
        "description": playbook.description,
        "is_active": playbook.is_active,
        "intervention_type": playbook.intervention_type,
        "causes": playbook.causes,
        "holdout_share": playbook.holdout_share,
        "reenrol_days": playbook.reenrol_days,
        "exit_conditions": playbook.exit_conditions,
        "steps": playbook.steps,
        "rules": [
            {"kind": rule.kind, "params": rule.params, "segment": rule.segment, "is_active": rule.is_active}
            for rule in playbook.rules.all()
        ],
    }


# --- Enrolment from the customers changelist ----------------------------------------------------


def step_outline(playbook: Playbook) -> list[str]:
    """What each step does, in words, for any customer (the dry run says it per customer)."""
    outline = []
    for step in playbook.steps:
        kind = step["type"]
        if kind == "send_email":
            to = {"customer": "the customer", "owner": "the account owner"}.get(step["to"], step["to"])
            line = f"E-mail {to}: {step.get('subject', '')!r}"
            if step["to"] != "owner" and steps.is_customer_facing(step, Customer()):
                line += (
                    " (sent without review: the playbook auto-sends customer e-mails)"
                    if playbook.auto_send_customer_emails
                    else " (waits in the review queue until someone approves it)"
                )
        elif kind == "create_intervention":
            line = f"Create a {step.get('priority', 'medium')}-priority {step['intervention_type']} intervention"
        elif kind == "wait":
            line = f"Wait {step['duration']}" if "duration" in step else f"Wait until {step['until']}"
        elif kind in ("notify", "create_alert"):
            line = "Notify the team" if kind == "notify" else "Raise an alert"
        elif kind == "webhook":
            line = f"POST a signed payload to {step['url']}"
        elif kind == "update_customer":
            line = "Set " + ", ".join(f"{k}={v!r}" for k, v in step["fields"].items())
        else:
            line = "Branch on a condition"
        outline.append(line)
    return outline


@dataclass(frozen=True)
class EnrolmentPreview:
    """What enrolling a selection of customers in a playbook would do."""

    selected: int
    outside_scope: int  # selected, but not customers the user sees
    will_enrol: int
    already_running: int
    otherwise_skipped: int  # inactive, or enrolled within the playbook's re-enrolment days
    holdout_share: float
    expected_holdout: int  # about how many of those enrolled the holdout keeps out
    steps: list[str]  # the playbook's steps in words (`step_outline`)


def enrolment_preview(*, user: Any, playbook: Playbook, customer_ids: list[int]) -> EnrolmentPreview:
    """What enrolling the selected customers would do, as `playbook_bulk_trigger(use_holdout=True)`
    will: who enrols, who is skipped and why, about how many the holdout keeps out. Writes nothing."""
    ids = list(dict.fromkeys(customer_ids))
    visible = set(customer_scope(user=user).filter(pk__in=ids).values_list("pk", flat=True))
    eligible = eligible_customer_ids(playbook=playbook, customer_ids=visible, now=timezone.now())
    running = PlaybookExecution.objects.filter(
        playbook=playbook, customer_id__in=visible, status=PlaybookExecution.Status.RUNNING
    ).count()
    return EnrolmentPreview(
        selected=len(ids),
        outside_scope=len(ids) - len(visible),
        will_enrol=len(eligible),
        already_running=running,
        otherwise_skipped=len(visible) - len(eligible) - running,
        holdout_share=playbook.holdout_share,
        expected_holdout=round(len(eligible) * playbook.holdout_share),
        steps=step_outline(playbook),
    )


# --- Dry run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    """What one step would do for one customer, in words."""

    key: str
    type: str
    would_do: str


@dataclass(frozen=True)
class CustomerPlan:
    """Why a customer would enrol and the steps the playbook would take for them today."""

    customer_id: int
    customer_name: str
    reasons: list[str]  # the matching rules' kinds, or "listed"
    holdout_chance: float
    exits_immediately: bool  # an exit condition holds already: no step would run
    steps: list[StepPlan]


@dataclass(frozen=True)
class DryRun:
    """Who would enrol in a playbook today and what each step would do for them."""

    playbook: Playbook
    as_of: dt.datetime
    would_enrol: int
    excluded: int  # in scope, but kept out by the caps
    customers: list[CustomerPlan]  # at most DRY_RUN_LIMIT


def _describe(step: dict, customer: Customer, context: dict, playbook: Playbook, now: dt.datetime) -> StepPlan:
    kind = step["type"]
    text = steps.template_context(customer, playbook.name)
    if kind == "create_intervention":
        who = {"owner": "the account owner", "least_loaded": "the least-loaded CSM"}.get(
            step.get("assignee", "owner"), step.get("assignee_name", "")
        )
        action = (
            f"create a {step.get('priority', 'medium')}-priority {step['intervention_type']} intervention for {who}, "
            f"due in {step.get('due_in_days', settings.PLAYBOOK_TASK_DUE_DAYS)} days"
        )
    elif kind == "send_email":
        to = {"customer": customer.email, "owner": customer.owner.email if customer.owner else "(no owner)"}.get(
            step["to"], step["to"]
        )
        action = f"e-mail {to}: {render_template(step['subject'], text)!r}"
        if not playbook.auto_send_customer_emails and steps.is_customer_facing(step, customer):
            action += " (queued for review)"
    elif kind in ("notify", "create_alert"):
        channel = step.get("channel", "in_app") if kind == "notify" else "alert"
        action = f"{channel}: {render_template(step.get('message', ''), text)!r}"
    elif kind == "webhook":
        action = f"POST a signed payload to {step['url']}"
    elif kind == "update_customer":
        action = "set " + ", ".join(f"{k}={v!r}" for k, v in step["fields"].items())
    elif kind == "wait":
        if "duration" in step:
            until = now + dt.timedelta(seconds=duration_seconds(step["duration"]))
            action = f"wait {step['duration']} (until {until:%Y-%m-%d %H:%M} UTC)"
        else:
            action = f"wait until {step['until']} (at most {step['timeout']})"
    else:
        holds = steps.condition_holds(step["if"], context)
        target = step.get("then" if holds else "else") or "next step"
        action = f"branch: the condition is {'true' if holds else 'false'} today → {target}"
    return StepPlan(key=step["key"], type=kind, would_do=action)


def _plan(playbook: Playbook, customer: Customer, context: dict, now: dt.datetime) -> list[StepPlan]:
    """The steps the playbook would run for the customer, branches taken on today's values."""
    plan, key = [], playbook.steps[0]["key"] if playbook.steps else ""
    by_key = {s["key"]: s for s in playbook.steps}
    while key:
        step = by_key[key]
        plan.append(_describe(step, customer, context, playbook, now))
        branch = None
        if step["type"] == "condition":
            branch = step.get("then" if steps.condition_holds(step["if"], context) else "else")
        key = next_key(playbook.steps, key, branch or step.get("next"))
    return plan


def dry_run(
    *, user: Any, playbook: Playbook, customer_ids: list[int] | None = None, eligible_only: bool = True
) -> DryRun:
    """Who would enrol today (rules, or the listed customers) and what each step would do. Writes nothing.

    With `eligible_only=False` the plan covers every listed customer in scope, also those the caps
    keep out today (the editor's preview of unsaved steps); `would_enrol` still counts only the eligible."""
    now = timezone.now()
    reasons: dict[int, list[str]] = defaultdict(list)
    if customer_ids is None:
        for rule in playbook.rules.filter(is_active=True):
            for pk in rules.matching_customers(rule, customer_ids=None, now=now):
                reasons[pk].append(rule.get_kind_display())
    else:
        for pk in customer_ids:
            reasons[pk].append("listed")
    visible = set(customer_scope(user=user).filter(pk__in=list(reasons)).values_list("pk", flat=True))
    eligible = eligible_customer_ids(playbook=playbook, customer_ids=visible, now=now)
    shown = eligible if eligible_only else sorted(visible)
    customers = Customer.objects.filter(pk__in=shown[:DRY_RUN_LIMIT]).select_related("owner").order_by("pk")
    plans = []
    for customer in customers:
        context = steps.customer_context(customer, None, now)
        exits = [c for c in playbook.exit_conditions if steps.condition_holds(c, context)]
        plans.append(
            CustomerPlan(
                customer_id=customer.pk,
                customer_name=customer.name,
                reasons=reasons[customer.pk],
                holdout_chance=playbook.holdout_share,
                exits_immediately=bool(exits),
                steps=[] if exits else _plan(playbook, customer, context, now),
            )
        )
    return DryRun(
        playbook=playbook,
        as_of=now,
        would_enrol=len(eligible),
        excluded=len(visible) - len(eligible),
        customers=plans,
    )


@dataclass(frozen=True)
class RulePreview:
    """What a trigger rule would do if it were evaluated now."""

    rule: TriggerRule
    as_of: dt.datetime
    matched: int  # every customer the rule matches
    matched_visible: int  # the matches among the customers the user sees
    would_enrol: int
    would_email: int  # of those, how many a customer-facing e-mail step would reach today
    text: str  # "would enrol N customers, e-mail M", as the go-ahead pages say it

    @property
    def playbook(self) -> Playbook:
        return self.rule.playbook

    def approval_summary(self) -> dict:
        """The dry run a go-ahead was given on, as `TriggerRule.approval_summary` stores it (stored
        rows have these keys; the admin reads `text` and `asOf` back)."""
        return {
            "ruleId": self.rule.pk,
            "playbook": self.playbook.name,
            "kind": self.rule.kind,
            "params": self.rule.params,
            "segment": self.rule.segment,
            "asOf": self.as_of.isoformat(),
            "matched": self.matched,
            "matchedVisible": self.matched_visible,
            "wouldEnrol": self.would_enrol,
            "wouldEmail": self.would_email,
            "holdoutShare": self.playbook.holdout_share,
            "emailsAutoSent": self.playbook.auto_send_customer_emails,
            "text": self.text,
        }


def rule_preview(*, user: Any, rule: TriggerRule) -> RulePreview:
    """The go-ahead's summary of one rule: whom it would enrol now and how many of them it would
    e-mail (a customer-facing e-mail step on today's path). Writes nothing.

    `would_enrol` is exactly what an evaluation now would start (holdout rows included): the rule's
    matches, narrowed by the one-running rule and the re-enrolment cap."""
    now = timezone.now()
    playbook = rule.playbook
    matched = rules.matching_customers(rule, customer_ids=None, now=now)
    visible = set(customer_scope(user=user).filter(pk__in=matched).values_list("pk", flat=True))
    eligible = eligible_customer_ids(playbook=playbook, customer_ids=visible, now=now)
    email_keys = {s["key"] for s in playbook.steps if s.get("type") == "send_email"}
    would_email = 0
    if email_keys:
        for customer in Customer.objects.filter(pk__in=eligible).select_related("owner").order_by("pk").iterator():
            context = steps.customer_context(customer, None, now)
            if any(steps.condition_holds(c, context) for c in playbook.exit_conditions):
                continue
            keys = {item.key for item in _plan(playbook, customer, context, now)}
            by_key = {s["key"]: s for s in playbook.steps}
            if any(steps.is_customer_facing(by_key[key], customer) for key in keys & email_keys):
                would_email += 1
    return RulePreview(
        rule=rule,
        as_of=now,
        matched=len(matched),
        matched_visible=len(visible),
        would_enrol=len(eligible),
        would_email=would_email,
        text=f"would enrol {len(eligible)} customers, e-mail {would_email}"
        + ("" if playbook.auto_send_customer_emails else " (each e-mail waits for review)"),
    )


@dataclass(frozen=True)
class AutomationCounts:
    """Playbook work on a set of customers: executions, those completed, and their step outcomes."""

    executions: int
    completed: int
    steps_succeeded: int
    steps_failed: int


def automation_counts(*, user: Any) -> AutomationCounts:
    """Over the active customers the user may see (the ML analytics page's book)."""
    executions = execution_scope(user=user).filter(customer__is_active=True)
    totals = executions.aggregate(total=Count("id"), completed=Count("id", filter=Q(status="completed")))
    steps = PlaybookStepRun.objects.filter(execution__in=executions).aggregate(
        succeeded=Count("id", filter=Q(status="succeeded")), failed=Count("id", filter=Q(status="failed"))
    )
    return AutomationCounts(
        executions=totals["total"],
        completed=totals["completed"],
        steps_succeeded=steps["succeeded"],
        steps_failed=steps["failed"],
    )


def email_review_scope(*, user: Any) -> QuerySet[EmailReview]:
    """The review queue a user sees: the whole book for managers, admins and viewers; a CSM's own customers."""
    reviews = EmailReview.objects.select_related("customer", "playbook", "execution")
    if sees_all_customers(user):
        return reviews
    return reviews.filter(customer__owner_id=user.pk)


# --- Proof: analytics ---------------------------------------------------------------------------

ArmKey = tuple[int, bool]  # (playbook id, is_holdout)


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _churn_counts(executions: QuerySet[PlaybookExecution], now: dt.datetime) -> dict[ArmKey, dict[str, int]]:
    """Per playbook and arm: `started`, `matured` and `churned` enrolments, in one query. The one
    definition of an enrolment's outcome, which every proof figure counts: it has `matured` once it
    started OUTCOME_DAYS before `now` or its customer churned; it `churned` if the customer churned
    on or after its start.

    Only a churned customer can change an outcome, so the executions are joined to those alone,
    outer (the others' `churned_at` is NULL, as it is in their row): by a small index-only read
    (`customers_churned_id_idx`), where joining every customer read all their wide rows, most of a
    Customer 360's database time on a large book. Written in SQL because the ORM joins a required
    foreign key inner, even through a FilteredRelation."""
    try:
        selected, params = (
            executions.values("id", "playbook_id", "is_holdout", "started_at", "customer_id").order_by().query
        ).sql_with_params()
    except EmptyResultSet:  # no playbook of the kinds asked for: nothing to count, as the ORM answers
        return {}
    cutoff = connection.ops.adapt_datetimefield_value(now - dt.timedelta(days=OUTCOME_DAYS))
    sql = f"""
        SELECT e.playbook_id, e.is_holdout, COUNT(*),
            COUNT(*) FILTER (WHERE e.started_at <= %s OR c.churned_at IS NOT NULL),
            COUNT(*) FILTER (WHERE c.churned_at >= e.started_at)
        FROM ({selected}) e
        LEFT JOIN {Customer._meta.db_table} c ON c.id = e.customer_id AND c.churned_at IS NOT NULL
        GROUP BY e.playbook_id, e.is_holdout
    """  # noqa: S608 -- the scope's own compiled query and a table name; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [cutoff, *params])
        rows = cursor.fetchall()
    return {
        (playbook_id, bool(is_holdout)): {"started": started, "matured": matured, "churned": churned}
        for playbook_id, is_holdout, started, matured, churned in rows
    }


def _arm_totals(executions: QuerySet[PlaybookExecution], now: dt.datetime) -> dict[ArmKey, dict[str, Any]]:
    """Per playbook and arm, every sum the proof figures are made of, in two queries (a book runs tens
    of thousands of executions): the outcomes (`_churn_counts`, their one definition), then counts
    by status, the hours of completed runs, the risk change OUTCOME_DAYS later (its sum and how many
    have one), the customers' MRR. Exact sums (Decimal, interval), so that means of a playbook and
    of its type come out the same however the rows are grouped. The risk OUTCOME_DAYS later is the
    one `execution_outcomes_record` stored when the outcome matured (a lookup per execution here took
    seconds on a large book, ADR 0022). The join to every customer is for their MRR, read by index
    only (`customers_id_mrr_idx`), not every customer's wide row."""
    completed = Q(status=PlaybookExecution.Status.COMPLETED)
    change = ExpressionWrapper(F("risk_after") - F("risk_at_start"), output_field=DecimalField())
    with_change = Q(risk_after__isnull=False, risk_at_start__isnull=False)
    rows = (
        executions.values("playbook_id", "is_holdout")
        .annotate(
            running=Count("id", filter=Q(status=PlaybookExecution.Status.RUNNING)),
            completed=Count("id", filter=completed),
            failed=Count("id", filter=Q(status=PlaybookExecution.Status.FAILED)),
            timed=Count("id", filter=completed & Q(completed_at__isnull=False)),
            duration=Sum(
                ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField()),
                filter=completed & Q(completed_at__isnull=False),
            ),
            risk_changes=Count("id", filter=with_change),
            risk_change=Sum(change, filter=with_change),
            mrr=Sum("customer__mrr"),
            retained_mrr=Sum("customer__mrr", filter=Q(customer__churned_at__isnull=True)),
        )
        .order_by()
    )
    outcomes = _churn_counts(executions, now)
    key = ("playbook_id", "is_holdout")
    totals: dict[ArmKey, dict[str, Any]] = {}
    for row in rows:
        arm = (row["playbook_id"], row["is_holdout"])
        totals[arm] = {**outcomes.get(arm, {}), **{k: v for k, v in row.items() if k not in key}}
    return totals


def _add(arms: list[dict[str, Any]]) -> dict[str, Any]:
    """The sums of several arms (None sums as nothing)."""
    total: dict[str, Any] = {}
    for arm in arms:
        for key, value in arm.items():
            if value is not None:
                total[key] = value if total.get(key) is None else total[key] + value
    return total


def _figures(treated: dict[str, Any], holdout: dict[str, Any], step_counts: dict[str, int]) -> dict:
    """The proof figures of one playbook or intervention type from its two arms' sums."""

    def risk_change(arm: dict[str, Any]) -> float | None:
        if not arm.get("risk_changes"):
            return None
        mean = Decimal(arm["risk_change"]) * 100 / arm["risk_changes"]  # percentage points
        return float(mean.quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN))

    def churn_rate(arm: dict[str, Any]) -> float | None:
        return _pct(arm["churned"], arm["matured"]) if arm.get("matured") else None

    executions, completed = treated.get("started", 0), treated.get("completed", 0)
    finished = executions - treated.get("running", 0)
    treated_churn, holdout_churn = churn_rate(treated), churn_rate(holdout)
    lift = (holdout_churn - treated_churn) if treated_churn is not None and holdout_churn is not None else None
    treated_mrr = float(treated.get("mrr") or 0)
    step_total = sum(step_counts.values())
    timed = treated.get("timed", 0)
    return {
        "executions": executions,
        "holdout_executions": holdout.get("started", 0),
        "running": executions - finished,
        "completed": completed,
        "failed": treated.get("failed", 0),
        "completion_rate": _pct(completed, finished),
        "step_runs": step_total,
        "step_failure_rate": _pct(step_counts.get("failed", 0), step_total),
        "avg_time_to_complete_hours": round(treated["duration"].total_seconds() / 3600 / timed, 2) if timed else None,
        "risk_change_30d": risk_change(treated),
        "holdout_risk_change_30d": risk_change(holdout),
        "churn_rate": treated_churn,
        "holdout_churn_rate": holdout_churn,
        "churn_reduction_points": round(lift, 1) if lift is not None else None,
        # An integer 0 without executions, as a sum over no rows has always been rendered.
        "retained_mrr": round(float(treated.get("retained_mrr") or 0), 2) if executions else 0,
        # Churn averted versus the holdout, as a year of the treated customers' MRR.
        "revenue_retained": round(max(lift, 0) / 100 * treated_mrr * 12, 2) if lift is not None else 0.0,
    }


def playbook_analytics(*, user: Any) -> dict:
    """Per playbook and per intervention type: volume, completion, failures, time, risk and churn vs
    holdout. Four queries, whatever the number of executions."""
    executions = execution_scope(user=user)
    totals = _arm_totals(executions, timezone.now())
    step_counts: dict[int, dict[str, int]] = defaultdict(dict)
    finished_steps = PlaybookStepRun.objects.filter(execution__in=executions, status__in=["succeeded", "failed"])
    for playbook_id, status, count in (
        finished_steps.values_list("execution__playbook_id", "status").annotate(n=Count("id")).order_by()
    ):
        step_counts[playbook_id][status] = count
    playbooks = []
    types: dict[str, list[int]] = defaultdict(list)
    for playbook in Playbook.objects.order_by("name"):
        kind = playbook.intervention_type or playbook.name
        types[kind].append(playbook.pk)
        arms = (totals.get((playbook.pk, False), {}), totals.get((playbook.pk, True), {}))
        playbooks.append(
            {
                "playbook_id": playbook.pk,
                "name": playbook.name,
                "intervention_type": kind,
                "holdout_share": playbook.holdout_share,
                **_figures(*arms, step_counts.get(playbook.pk, {})),
            }
        )
    by_type = []
    for kind, ids in sorted(types.items()):
        treated = _add([totals.get((pk, False), {}) for pk in ids])
        holdout = _add([totals.get((pk, True), {}) for pk in ids])
        by_type.append(
            {"intervention_type": kind, **_figures(treated, holdout, _add([step_counts.get(pk, {}) for pk in ids]))}
        )
    return {"playbooks": playbooks, "by_intervention_type": by_type}


def playbook_churn_counts(*, user: Any, now: dt.datetime) -> dict[ArmKey, dict[str, int]]:
    """Per (playbook id, is_holdout) in the user's scope: `started`, `matured` and `churned`
    enrolments, counted as the playbook analytics count them (the Reports' playbook effects)."""
    return _churn_counts(execution_scope(user=user), now)


def playbook_analytics_by_type(*, kinds: set[str] | None = None) -> dict[str, dict]:
    """Book-wide churn of treated vs holdout customers per intervention type (keys lower-cased),
    for recommendations: `executions`, `churn_rate`, `holdout_churn_rate`, `churn_reduction_points`
    as `playbook_analytics` computes them (the same counts, without the other sums: a customer
    page asks for it). `kinds` (lower-cased) limits the count to those types' playbooks."""
    kind_of = {pk: (kind or name) for pk, kind, name in Playbook.objects.values_list("pk", "intervention_type", "name")}
    if kinds is not None:
        kind_of = {pk: kind for pk, kind in kind_of.items() if kind.lower() in kinds}
    executions = (
        PlaybookExecution.objects.all()
        if kinds is None
        else PlaybookExecution.objects.filter(playbook_id__in=list(kind_of))
    )
    counts = _churn_counts(executions, timezone.now())
    result = {}
    # Every type answers, with or without executions, as the full analytics do.
    for kind in dict.fromkeys(kind_of.values()):
        ids = [pk for pk, of in kind_of.items() if of == kind]
        figures = _figures(
            _add([counts.get((pk, False), {}) for pk in ids]), _add([counts.get((pk, True), {}) for pk in ids]), {}
        )
        result[kind.lower()] = {
            "intervention_type": kind,
            **{k: figures[k] for k in ("executions", "churn_rate", "holdout_churn_rate", "churn_reduction_points")},
        }
    return result
