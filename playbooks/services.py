"""Writes for playbooks: definitions (validated), enrolment (manual, bulk, rules), cancel and retry,
and each enrolment's outcome once it has matured.

Enrolment is set-based: one read of who is eligible, one bulk insert, then the executions are
handed to workers after commit. The unique "one running execution per customer and playbook"
constraint is the last word when two enrolments race.
"""

import datetime as dt
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, Exists, ExpressionWrapper, OuterRef, Q, Subquery
from django.utils import timezone

from core.enqueue import enqueue as publish
from core.exceptions import ConflictError, InvalidInputError, NotFoundError
from customers.models import Customer
from customers.selectors import customer_get, customer_scope
from interventions.models import Intervention
from interventions.selectors import Recommendation, recommend_intervention
from interventions.services import intervention_record
from playbooks import engine
from playbooks.definitions import duration_seconds, validate_exit_conditions, validate_steps
from playbooks.models import OUTCOME_DAYS, EmailReview, Playbook, PlaybookExecution, TriggerRule
from playbooks.rules import approved_rules, eligible_customer_ids, is_approved, matching_customers, rule_fingerprint
from playbooks.selectors import execution_scope, playbook_analytics_by_type
from predictions.models import ChurnPrediction

Status = PlaybookExecution.Status
CANCELLED_NOTE = "execution cancelled"
_random = random.SystemRandom()  # holdout assignment: unpredictable, so no one can game it


def enqueue(execution_ids: list[int], token: str) -> None:
    """Hand executions to workers (one task per chunk) once the enrolling transaction has committed."""
    if execution_ids:
        transaction.on_commit(lambda: dispatch(list(execution_ids), token))


def chunks(ids: list[int], size: int) -> list[list[int]]:
    size = max(size, 1)
    return [ids[offset : offset + size] for offset in range(0, len(ids), size)]


def dispatch(execution_ids: list[int], token: str, *, queue: str | None = None, chunk_size: int | None = None) -> None:
    """One task per chunk of `PLAYBOOK_DISPATCH_CHUNK` executions (or `chunk_size`).

    A chunk the broker cannot take is logged and left to the claimer: its executions carry a
    queued lease, and `claim_due_executions` claims them again once it expires. The task goes by
    its registered name: the tasks import this module."""
    for chunk in chunks(execution_ids, chunk_size or settings.PLAYBOOK_DISPATCH_CHUNK):
        publish("playbooks.tasks.run_playbook_executions", chunk, token, queue=queue or None)


# --- Definitions --------------------------------------------------------------------------------

PLAYBOOK_FIELDS = ("description", "steps", "is_active", "intervention_type", "causes", "holdout_share", "reenrol_days")


def playbook_clean(data: dict) -> dict:
    """Validated playbook fields (snake_case) or InvalidInputError naming the step and field."""
    cleaned = dict(data)
    cleaned["steps"] = validate_steps(data.get("steps"))
    cleaned["exit_conditions"] = validate_exit_conditions(data.get("exit_conditions", []))
    share = data.get("holdout_share", 0.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 0.9:
        raise InvalidInputError({"holdout_share": ["must be a number between 0 and 0.9"]})
    days = data.get("reenrol_days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 3650:
        raise InvalidInputError({"reenrol_days": ["must be an integer between 0 and 3650"]})
    causes = data.get("causes", [])
    if not isinstance(causes, list) or not all(isinstance(c, str) for c in causes):
        raise InvalidInputError({"causes": ["must be a list of churn cause names"]})
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise InvalidInputError({"rules": ["must be a list"]})
    errors = {}
    for index, rule in enumerate(rules):
        problem = _rule_problem(rule)
        if problem:
            errors[index] = problem
    if errors:
        raise InvalidInputError({"rules": errors})
    return cleaned


def _rule_problem(rule: Any) -> dict | None:
    if not isinstance(rule, dict) or rule.get("kind") not in TriggerRule.Kind.values:
        return {"kind": [f"must be one of {', '.join(TriggerRule.Kind.values)}"]}
    params = rule.get("params", {})
    if not isinstance(params, dict):
        return {"params": ["must be an object"]}
    if rule["kind"] == TriggerRule.Kind.HEALTH_DROP:
        for name in ("points", "days"):
            if not isinstance(params.get(name), int) or params[name] <= 0:
                return {"params": [f"{name}: a positive integer is required"]}
    if rule["kind"] == TriggerRule.Kind.RENEWAL_WITHIN:
        days = params.get("days")
        if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= 730:
            return {"params": ["days: a whole number of days from 1 to 730 is required"]}
    if rule["kind"] == TriggerRule.Kind.CAUSE_APPEARS and not isinstance(params.get("cause"), str):
        return {"params": ["cause: a churn cause name is required"]}
    if not isinstance(rule.get("segment", {}), dict):
        return {"segment": ["must be an object"]}
    return None


@transaction.atomic
def playbook_upsert(*, name: str, data: dict) -> tuple[Playbook, bool]:
    """Create or replace a playbook by name (the import path); its rules are replaced too."""
    cleaned = playbook_clean(data)
    defaults = {field: cleaned[field] for field in PLAYBOOK_FIELDS if field in cleaned}
    defaults["exit_conditions"] = cleaned["exit_conditions"]
    playbook, created = Playbook.objects.update_or_create(name=name, defaults=defaults)
    if "rules" in data:
        # Re-importing a rule unchanged keeps its go-ahead; a new or changed rule waits for one.
        approvals = {
            rule.approved_fingerprint: rule for rule in playbook.rules.filter(is_active=True) if is_approved(rule)
        }
        playbook.rules.all().delete()
        rows = []
        for item in data["rules"]:
            rule = TriggerRule(
                playbook=playbook,
                kind=item["kind"],
                params=item.get("params", {}),
                segment=item.get("segment", {}),
                is_active=item.get("is_active", True),
            )
            approved = approvals.get(rule_fingerprint(rule)) if rule.is_active else None
            if approved is not None:
                for name in ("approved_at", "approved_by_id", "approval_summary", "approved_fingerprint"):
                    setattr(rule, name, getattr(approved, name))
            rows.append(rule)
        TriggerRule.objects.bulk_create(rows)
    return playbook, created


def playbook_create(*, data: dict) -> Playbook:
    if Playbook.objects.filter(name=data.get("name")).exists():
        raise ConflictError(f"A playbook named {data.get('name')!r} already exists.")
    return playbook_upsert(name=data["name"], data=data)[0]


def playbooks_import(*, documents: list[dict]) -> dict[str, int]:
    """Import exported playbooks (all or nothing). Errors are keyed by the playbook's position."""
    errors = {}
    for index, document in enumerate(documents):
        try:
            if not isinstance(document, dict) or not isinstance(document.get("name"), str):
                raise InvalidInputError({"name": ["required"]})
            playbook_clean(document)
        except InvalidInputError as exc:
            errors[index] = exc.errors
    if errors:
        raise InvalidInputError({"playbooks": errors})
    counts = {"created": 0, "updated": 0}
    with transaction.atomic():
        for document in documents:
            _, created = playbook_upsert(name=document["name"], data=document)
            counts["created" if created else "updated"] += 1
    return counts


# --- Enrolment ----------------------------------------------------------------------------------


def enrol(
    *,
    playbook: Playbook,
    customer_ids: Iterable[int],
    trigger: str,
    rule: TriggerRule | None = None,
    user: Any = None,
    now: dt.datetime | None = None,
    respect_cap: bool = True,
    use_holdout: bool = True,
    interventions: dict[int, Intervention] | None = None,
) -> list[PlaybookExecution]:
    """Start the playbook for every eligible customer; returns the executions created (running or holdout).

    `now` defaults to the database's clock: the start time feeds the re-enrolment cap and the first
    lease, which other processes compare with the database's clock too."""
    now = now or engine.db_now()
    with transaction.atomic():
        ids = eligible_customer_ids(playbook=playbook, customer_ids=customer_ids, now=now, respect_cap=respect_cap)
        if not ids:
            return []
        risks = dict(Customer.objects.filter(pk__in=ids).values_list("pk", "churn_risk"))
        token = uuid.uuid4().hex
        first = playbook.steps[0]["key"] if playbook.steps else ""
        rows = []
        for customer_id in ids:
            holdout = use_holdout and playbook.holdout_share > 0 and _random.random() < playbook.holdout_share
            common = {
                "playbook": playbook,
                "customer_id": customer_id,
                "started_at": now,
                "trigger": trigger,
                "rule": rule,
                "triggered_by": user if user is not None and user.is_authenticated else None,
                "is_holdout": holdout,
                "risk_at_start": risks.get(customer_id),
                "intervention": (interventions or {}).get(customer_id),
            }
            if holdout:
                rows.append(
                    PlaybookExecution(
                        **common,
                        status=Status.COMPLETED,
                        completed_at=now,
                        result={"holdout": True, "steps": []},
                        lease_token=token,
                    )
                )
            else:
                rows.append(
                    PlaybookExecution(
                        **common,
                        status=Status.RUNNING,
                        current_step=first,
                        lease_token=token,
                        next_run_at=engine.queued_until(now),  # a worker's lease once one takes it
                        result={"definition": playbook.steps, "steps": []},
                    )
                )
        # A concurrent enrolment of the same customer loses quietly to the one-running constraint.
        PlaybookExecution.objects.bulk_create(rows, ignore_conflicts=True)
        created = list(
            PlaybookExecution.objects.filter(playbook=playbook, customer_id__in=ids, started_at=now, lease_token=token)
        )
        enqueue([e.pk for e in created if e.status == Status.RUNNING], token)
    return created


def estimated_completion(playbook: Playbook, now: dt.datetime) -> dt.datetime:
    """Start plus every wait's duration (or timeout): when the last step can have run."""
    seconds = 0
    for step in playbook.steps:
        if step.get("type") == "wait":
            seconds += duration_seconds(step.get("duration", step.get("timeout", 0)))
    return now + dt.timedelta(seconds=seconds + 60)


def _playbook_for(*, playbook_id: Any, intervention_type: str | None) -> Playbook:
    if playbook_id is not None:
        playbook = Playbook.objects.filter(pk=playbook_id, is_active=True).first()
        if playbook is None:
            raise NotFoundError("Playbook not found")
        return playbook
    playbook = (
        Playbook.objects.filter(is_active=True)
        .filter(Q(intervention_type__iexact=intervention_type) | Q(name__iexact=intervention_type))
        .order_by("id")
        .first()
    )
    if playbook is None:
        # As for an unknown playbookId: the playbook the request names does not exist (404), the
        # request itself is well formed.
        raise NotFoundError(f"No active playbook answers the intervention type {intervention_type!r}.")
    return playbook


@dataclass(frozen=True)
class Triggered:
    """A playbook started by hand for one customer, with the intervention that tracks the run."""

    playbook: Playbook
    intervention: Intervention
    execution: PlaybookExecution
    estimated_completion: dt.datetime
    recommendation: Recommendation | None  # None when it could not be worked out


def playbook_trigger(
    *, user: Any, customer_id: int, playbook_id: int | None = None, intervention: dict | None = None
) -> Triggered:
    """Start a playbook for one customer now (`POST /api/v1/playbooks/trigger`).

    `intervention` holds the tracking intervention's fields by column name (`type`, `priority`,
    `assigned_csm`, `description`, `next_action`, `notes`, `due_date`); without `playbook_id` the
    playbook is the active one whose intervention type (or name) is its `type`.

    The tracking intervention is created here, in the enrolment's transaction, so the caller has
    its id at once; the playbook's first `create_intervention` step works on it. Manual triggers
    skip the re-enrolment cap and the holdout (a person asked for it), but a running execution of
    the same playbook for the customer is a conflict.
    """
    intervention = intervention or {}
    customer = customer_get(user=user, customer_id=customer_id)
    playbook = _playbook_for(playbook_id=playbook_id, intervention_type=intervention.get("type"))
    now = engine.db_now()  # the execution's start and first lease are on the database's clock
    with transaction.atomic():
        if PlaybookExecution.objects.filter(playbook=playbook, customer=customer, status=Status.RUNNING).exists():
            raise ConflictError(f"{playbook.name} is already running for this customer.")
        tracking = intervention_record(
            customer=customer,
            created_by_id=user.pk,
            type=intervention.get("type") or playbook.intervention_type or playbook.name,
            priority=intervention.get("priority") or "medium",
            assigned_csm=intervention.get("assigned_csm") or "",
            description=intervention.get("description") or playbook.description,
            next_action=intervention.get("next_action", ""),
            notes=intervention.get("notes") or f"Playbook {playbook.name} triggered.",
            due_date=intervention.get("due_date"),
        )
        try:
            with transaction.atomic():
                executions = enrol(
                    playbook=playbook,
                    customer_ids=[customer.pk],
                    trigger=PlaybookExecution.Trigger.API,
                    user=user,
                    now=now,
                    respect_cap=False,
                    use_holdout=False,
                    interventions={customer.pk: tracking},
                )
        except IntegrityError:
            executions = []
        if not executions:
            raise ConflictError(f"{playbook.name} could not start for this customer (inactive or already running).")
    recommendation: Recommendation | None
    try:
        recommendation = recommend_intervention(
            user=user, customer_id=customer.pk, playbook_proof=playbook_analytics_by_type
        )
    except Exception:
        recommendation = None  # the playbook has started: advice is a bonus, not a reason to fail
    return Triggered(
        playbook=playbook,
        intervention=tracking,
        execution=executions[0],
        estimated_completion=estimated_completion(playbook, now),
        recommendation=recommendation,
    )


@dataclass(frozen=True)
class BulkEnrolment:
    """What enrolling a list of customers did, in the order they were asked for."""

    playbook: Playbook
    requested: int  # distinct customers asked for
    skipped: list[int]  # customer ids not enrolled (inactive, capped, or already running)
    execution_ids: list[int]  # the executions started (running or holdout)

    @property
    def enrolled(self) -> int:
        return len(self.execution_ids)


def playbook_bulk_trigger(
    *, user: Any, playbook_id: int, customer_ids: list[int], use_holdout: bool = False
) -> BulkEnrolment:
    """Enrol a list of customers (all visible to the user, or 404). Caps apply; the holdout only
    with `use_holdout` (the admin's changelist action: a filtered list is a segment, like a rule's)."""
    playbook = _playbook_for(playbook_id=playbook_id, intervention_type=None)
    ids = list(dict.fromkeys(customer_ids))
    visible = set(customer_scope(user=user).filter(pk__in=ids).values_list("pk", flat=True))
    missing = sorted(set(ids) - visible)
    if missing:
        raise NotFoundError(f"Customers not found: {', '.join(map(str, missing[:20]))}")
    executions = enrol(
        playbook=playbook, customer_ids=ids, trigger=PlaybookExecution.Trigger.BULK, user=user, use_holdout=use_holdout
    )
    enrolled = {e.customer_id: e.pk for e in executions}
    return BulkEnrolment(
        playbook=playbook,
        requested=len(ids),
        skipped=[pk for pk in ids if pk not in enrolled],
        execution_ids=[enrolled[pk] for pk in ids if pk in enrolled],
    )


def evaluate_rules(
    *, customer_ids: list[int] | None = None, kinds: Iterable[str] | None = None, now: dt.datetime | None = None
) -> dict[int, int]:
    """Enrol every customer an approved rule matches; returns {rule id: executions started}.

    Rules waiting for a manager's go-ahead enrol no one (a person can still enrol by hand)."""
    # Predictions carry the scoring process's clock, so their windows are read with this one; the
    # executions' start times and leases default to the database's clock inside `enrol`.
    at = now or timezone.now()
    started: dict[int, int] = {}
    for rule in approved_rules(kinds):
        ids = matching_customers(rule, customer_ids=customer_ids, now=at)
        executions = enrol(
            playbook=rule.playbook, customer_ids=ids, trigger=PlaybookExecution.Trigger.RULE, rule=rule, now=now
        )
        started[rule.pk] = len(executions)
    return started


# --- Cancel and retry ---------------------------------------------------------------------------


def _execution_for_update(*, user: Any, execution_id: Any) -> PlaybookExecution:
    try:
        execution_id = int(execution_id)
    except (TypeError, ValueError):
        raise NotFoundError("Execution not found") from None
    if not execution_scope(user=user).filter(pk=execution_id).exists():
        raise NotFoundError("Execution not found")
    return PlaybookExecution.objects.select_for_update().get(pk=execution_id)


@transaction.atomic
def execution_cancel(*, user: Any, execution_id: Any, reason: str = "") -> PlaybookExecution:
    execution = _execution_for_update(user=user, execution_id=execution_id)
    if execution.status != Status.RUNNING:
        raise ConflictError(f"Only a running execution can be cancelled (this one is {execution.status}).")
    now = engine.db_now()
    execution.status, execution.completed_at = Status.CANCELLED, now
    execution.next_run_at, execution.lease_token = None, ""
    execution.result["cancelled"] = {"by": getattr(user, "username", None), "at": engine._iso(now), "reason": reason}
    execution.save()
    # Its queued e-mail can no longer be approved: take it off the review queue.
    EmailReview.objects.filter(execution=execution, status=EmailReview.Status.PENDING).update(
        status=EmailReview.Status.DISCARDED, decided_by=user, decided_at=now, note=CANCELLED_NOTE
    )
    return execution


@transaction.atomic
def execution_retry(*, user: Any, execution_id: Any) -> PlaybookExecution:
    """Resume a failed or cancelled execution at the step where it stopped."""
    execution = _execution_for_update(user=user, execution_id=execution_id)
    if execution.status not in (Status.FAILED, Status.CANCELLED):
        raise ConflictError(f"Only a failed or cancelled execution can be retried (this one is {execution.status}).")
    if execution.is_holdout:
        raise ConflictError("A holdout execution has no steps to retry.")
    if PlaybookExecution.objects.filter(
        playbook_id=execution.playbook_id, customer_id=execution.customer_id, status=Status.RUNNING
    ).exists():
        raise ConflictError("This playbook is already running for the customer.")
    # The failed step left no effect (internal steps roll back; external ones failed), so it runs again.
    execution.step_runs.filter(step_key=execution.current_step).exclude(status="succeeded").delete()
    # An e-mail taken off the queue by the cancel is queued afresh rather than skipped.
    execution.email_reviews.filter(step_key=execution.current_step, note=CANCELLED_NOTE).delete()
    execution.result["steps"] = [s for s in execution.result.get("steps", []) if s.get("key") != execution.current_step]
    token = uuid.uuid4().hex
    now = engine.db_now()  # the lease is compared with the database's clock
    execution.status, execution.completed_at, execution.error, execution.attempts = Status.RUNNING, None, "", 0
    execution.lease_token, execution.next_run_at = token, engine.queued_until(now)
    execution.result.setdefault("retries", []).append({"by": getattr(user, "username", None), "at": engine._iso(now)})
    execution.result.pop("error", None)
    execution.save()
    enqueue([execution.pk], token)
    return execution


def execution_outcomes_record(*, customer_ids: Iterable[int] | None = None, now: dt.datetime | None = None) -> int:
    """Record `risk_after` on every enrolment (of these customers, or the book) that started
    OUTCOME_DAYS ago and has none yet: the customer's first prediction on or after that day, the
    earliest id first on a tie. Runs after each scoring commits; one UPDATE, safe to run twice
    (written once, never overwritten: the proof keeps the risk as it was read when the outcome
    matured). Returns how many enrolments it recorded."""
    now = now or timezone.now()
    later = ChurnPrediction.objects.filter(
        customer=OuterRef("customer_id"),
        prediction_date__gte=ExpressionWrapper(
            OuterRef("started_at") + dt.timedelta(days=OUTCOME_DAYS), output_field=DateTimeField()
        ),
    ).order_by("prediction_date", "id")
    pending = PlaybookExecution.objects.filter(
        risk_after__isnull=True, started_at__lte=now - dt.timedelta(days=OUTCOME_DAYS)
    ).filter(Exists(later))
    if customer_ids is not None:
        pending = pending.filter(customer_id__in=list(customer_ids))
    return pending.update(risk_after=Subquery(later.values("churn_probability")[:1]))
