"""Automatic triggers: rules stored in the database, evaluated set-based.

Each active rule turns into one or two bulk reads that yield candidate customer ids; the segment
filter narrows them; `services.enrol` applies the one-running rule, the re-enrolment cap and the
holdout. Runs after the scoring batch (all customers) and on events (one customer).

A rule enrols by itself only once a manager has given the go-ahead on its dry-run summary, and
only while it is the rule that was approved (`rule_fingerprint`): a new or edited rule is paused.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from customers.models import BillingEvent, Customer
from customers.selectors import risk_thresholds
from playbooks.models import Playbook, PlaybookExecution, TriggerRule
from predictions.models import ChurnPrediction

RECENT = dt.timedelta(days=1)  # what "appears"/"enters" means for the daily batch


AT_RISK_LEVELS = ("medium", "high")


def rule_fingerprint(rule: TriggerRule) -> str:
    """What a go-ahead approves: the trigger, its parameters and its segment."""
    document = json.dumps([rule.kind, rule.params or {}, rule.segment or {}], sort_keys=True, default=str)
    return hashlib.sha256(document.encode()).hexdigest()


def is_approved(rule: TriggerRule) -> bool:
    return rule.approved_at is not None and rule.approved_fingerprint == rule_fingerprint(rule)


def segment_filter(customers: QuerySet[Customer], segment: dict) -> QuerySet[Customer]:
    """`{plan: [...], mrrGte, mrrLte, riskGte, riskLte, riskLevel: [...], ownerIds: [...], healthGte,
    healthLte, signupWithinDays}` (all optional; risk as a probability from 0 to 1)."""

    if segment.get("signupWithinDays") is not None:
        since = timezone.now() - dt.timedelta(days=int(segment["signupWithinDays"]))
        customers = customers.filter(signup_date__gte=since)
    if segment.get("plan"):
        customers = customers.filter(plan__in=segment["plan"])
    if segment.get("mrrGte") is not None:
        customers = customers.filter(mrr__gte=segment["mrrGte"])
    if segment.get("mrrLte") is not None:
        customers = customers.filter(mrr__lte=segment["mrrLte"])
    if segment.get("riskGte") is not None:
        customers = customers.filter(churn_risk__gte=segment["riskGte"])
    if segment.get("riskLte") is not None:
        customers = customers.filter(churn_risk__lte=segment["riskLte"])
    if segment.get("healthGte") is not None:
        customers = customers.filter(health_score__gte=segment["healthGte"])
    if segment.get("healthLte") is not None:
        customers = customers.filter(health_score__lte=segment["healthLte"])
    if segment.get("ownerIds"):
        customers = customers.filter(owner_id__in=segment["ownerIds"])
    if segment.get("riskLevel"):
        medium, high = risk_thresholds()
        bands = {
            "high": Q(churn_risk__gte=high),
            "medium": Q(churn_risk__gte=medium, churn_risk__lt=high),
            "low": Q(churn_risk__lt=medium),
        }
        q = Q()
        for level in segment["riskLevel"]:
            q |= bands.get(level, Q(pk__in=[]))
        customers = customers.filter(q)
    return customers


def _recent_predictions(customer_ids: list[int] | None, now: dt.datetime) -> QuerySet[ChurnPrediction]:
    """Each customer's latest prediction of the last day, with the one before it alongside."""
    latest = ChurnPrediction.objects.filter(customer=OuterRef("customer")).order_by("-prediction_date", "-id")
    previous = ChurnPrediction.objects.filter(
        customer=OuterRef("customer"), prediction_date__lt=OuterRef("prediction_date")
    ).order_by("-prediction_date", "-id")
    rows = ChurnPrediction.objects.filter(
        prediction_date__gte=now - RECENT, prediction_date__lte=now, pk=Subquery(latest.values("pk")[:1])
    )
    if customer_ids is not None:
        rows = rows.filter(customer_id__in=customer_ids)
    return rows.annotate(
        previous_level=Subquery(previous.values("risk_level")[:1]),
        previous_causes=Subquery(previous.values("top_causes")[:1]),
    )


def candidates(rule: TriggerRule, *, customer_ids: list[int] | None, now: dt.datetime) -> set[int]:
    """Customers the rule's trigger matches now (before the segment filter and the caps)."""
    params = rule.params or {}
    if rule.kind == TriggerRule.Kind.RISK_ENTERS_HIGH:
        rows = _recent_predictions(customer_ids, now).filter(risk_level="high")
        return {pk for pk, previous in rows.values_list("customer_id", "previous_level") if previous != "high"}
    if rule.kind == TriggerRule.Kind.CAUSE_APPEARS:
        cause = params.get("cause")

        def names(causes: object) -> set[str]:
            if isinstance(causes, str):  # a JSON subquery can come back as text on some backends
                causes = json.loads(causes)
            return {c.get("cause") for c in causes or [] if isinstance(c, dict)}

        # A cause "appears" against an earlier prediction that lacked it, in an at-risk prediction:
        # a first prediction has nothing to compare with (after install every cause would be new),
        # and a low-risk customer with a cause needs no outreach.
        rows = (
            _recent_predictions(customer_ids, now)
            .filter(risk_level__in=AT_RISK_LEVELS, previous_level__isnull=False)
            .values_list("customer_id", "top_causes", "previous_causes")
        )
        return {pk for pk, now_causes, before in rows if cause in names(now_causes) and cause not in names(before)}
    if rule.kind == TriggerRule.Kind.HEALTH_DROP:
        days, points = int(params.get("days", 30)), int(params.get("points", 20))
        then = ChurnPrediction.objects.filter(
            customer=OuterRef("pk"), prediction_date__lte=now - dt.timedelta(days=days), health_score__isnull=False
        ).order_by("-prediction_date", "-id")
        customers = Customer.objects.filter(is_active=True)
        if customer_ids is not None:
            customers = customers.filter(pk__in=customer_ids)
        rows = customers.annotate(health_then=Subquery(then.values("health_score")[:1])).filter(
            health_then__isnull=False
        )
        return {
            pk
            for pk, health, before in rows.values_list("pk", "health_score", "health_then")
            if before - health >= points
        }
    if rule.kind == TriggerRule.Kind.FAILED_PAYMENT:
        days = int(params.get("days", 1))
        events = BillingEvent.objects.filter(
            kind=BillingEvent.Kind.PAYMENT_FAILED, occurred_at__gte=now - dt.timedelta(days=days), occurred_at__lte=now
        )
        if customer_ids is not None:
            events = events.filter(customer_id__in=customer_ids)
        return set(events.values_list("customer_id", flat=True).distinct())
    if rule.kind == TriggerRule.Kind.RENEWAL_WITHIN:
        # Contracts renewing from today up to `days` ahead (the renewal date is a calendar day).
        today = timezone.localdate(now)
        customers = Customer.objects.filter(
            is_active=True, renewal_date__gte=today, renewal_date__lte=today + dt.timedelta(days=int(params["days"]))
        )
        if customer_ids is not None:
            customers = customers.filter(pk__in=customer_ids)
        return set(customers.values_list("pk", flat=True))
    customers = Customer.objects.filter(is_active=True)  # SEGMENT: the filter alone
    if customer_ids is not None:
        customers = customers.filter(pk__in=customer_ids)
    return set(customers.values_list("pk", flat=True))


def matching_customers(rule: TriggerRule, *, customer_ids: list[int] | None, now: dt.datetime) -> list[int]:
    ids = candidates(rule, customer_ids=customer_ids, now=now)
    if not ids:
        return []
    customers = Customer.objects.filter(pk__in=ids, is_active=True)
    if rule.segment:
        customers = segment_filter(customers, rule.segment)
    return sorted(customers.values_list("pk", flat=True))


def active_rules(kinds: Iterable[str] | None = None) -> QuerySet[TriggerRule]:
    rules = TriggerRule.objects.filter(is_active=True, playbook__is_active=True).select_related("playbook")
    if kinds:
        rules = rules.filter(kind__in=list(kinds))
    return rules.order_by("playbook_id", "id")


def approved_rules(kinds: Iterable[str] | None = None) -> list[TriggerRule]:
    """The active rules that may enrol by themselves (go-ahead given for the rule as it is now)."""
    return [rule for rule in active_rules(kinds).filter(approved_at__isnull=False) if is_approved(rule)]


def eligible_customer_ids(
    *, playbook: Playbook, customer_ids: Iterable[int], now: dt.datetime, respect_cap: bool = True
) -> list[int]:
    """Active customers without a running execution of the playbook (and, with the cap, none recent)."""
    ids = set(customer_ids)
    if not ids:
        return []
    busy = Q(status=PlaybookExecution.Status.RUNNING)
    if respect_cap and playbook.reenrol_days:
        busy |= Q(started_at__gte=now - dt.timedelta(days=playbook.reenrol_days))
    taken = set(
        PlaybookExecution.objects.filter(busy, playbook=playbook, customer_id__in=ids).values_list(
            "customer_id", flat=True
        )
    )
    active = Customer.objects.filter(pk__in=ids - taken, is_active=True).values_list("pk", flat=True)
    return sorted(active)
