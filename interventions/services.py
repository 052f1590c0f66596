"""Writes to interventions: create, update, bulk actions. Atomic; ids outside the portfolio are 404."""

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.exceptions import NotFoundError
from customers.models import Customer
from customers.selectors import customer_get, customer_scope
from interventions.models import Intervention
from interventions.selectors import intervention_scope

# The columns a person may write.
WRITABLE_FIELDS = frozenset(
    {
        "type",
        "status",
        "priority",
        "assigned_csm",
        "description",
        "next_action",
        "due_date",
        "completed_at",
        "notes",
        "outcome",
    }
)


def _owner_name(customer: Customer) -> str:
    owner = customer.owner
    return (owner.get_full_name() or owner.get_username()) if owner else ""


def intervention_create(*, user: Any, customer_id: int, **fields: Any) -> Intervention:
    """A person's new intervention (column names), on a customer they may see."""
    customer = customer_get(user=user, customer_id=customer_id)
    values = {name: value for name, value in fields.items() if name in WRITABLE_FIELDS}
    return intervention_record(customer=customer, created_by_id=user.pk, **values)


def intervention_record(*, customer: Customer, created_by_id: int | None, **values: Any) -> Intervention:
    """Store an intervention (column names): open and assigned to the customer's owner unless
    said otherwise. The one way a row is created, for people (through intervention_create) and for
    the playbook engine, which acts without a user of its own."""
    values.setdefault("status", Intervention.Status.ACTIVE)
    if not values.get("assigned_csm"):
        values["assigned_csm"] = _owner_name(customer)
    if values["status"] == Intervention.Status.COMPLETED and not values.get("completed_at"):
        values["completed_at"] = timezone.now()
    return Intervention.objects.create(customer=customer, created_by_id=created_by_id, **values)


def intervention_task_fill(
    *, intervention: Intervention, priority: str, assigned_csm: str, description: str, due_date: datetime
) -> Intervention:
    """Complete an intervention a playbook adopted: its priority, and whatever of the assignee,
    description and due date it does not have yet."""
    intervention.priority = priority
    intervention.assigned_csm = intervention.assigned_csm or assigned_csm
    intervention.description = intervention.description or description
    intervention.due_date = intervention.due_date or due_date
    intervention.save(update_fields=["priority", "assigned_csm", "description", "due_date"])
    return intervention


@transaction.atomic
def activity_log(
    *, user: Any, customer_id: int, activity: str, notes: str = "", follow_up_at: datetime | None = None
) -> tuple[Intervention, Intervention | None]:
    """Record a touch (call, e-mail, meeting, QBR, note) and, with `follow_up_at`, the task it leaves.

    The touch is stored as a completed intervention marked with its `activity`, so it stays on the
    customer's timeline; the follow-up is ordinary open work with a due date, so it shows on the
    owner's home under "due today" and "overdue" when the day comes.
    """
    label = Intervention.Activity(activity).label
    touch = intervention_create(
        user=user,
        customer_id=customer_id,
        type=label,
        status=Intervention.Status.COMPLETED,
        priority=Intervention.Priority.LOW,
        notes=notes,
    )
    touch.activity = activity
    touch.save(update_fields=["activity"])
    follow_up = None
    if follow_up_at is not None:
        follow_up = intervention_create(
            user=user,
            customer_id=customer_id,
            type=f"Follow up: {label.lower()}",
            status=Intervention.Status.PENDING,
            description=notes,
            due_date=follow_up_at,
        )
    return touch, follow_up


def intervention_get(*, user: Any, intervention_id: Any) -> Intervention:
    try:
        intervention_id = int(intervention_id)
    except (TypeError, ValueError):
        raise NotFoundError("Intervention not found") from None
    intervention = intervention_scope(user=user).filter(pk=intervention_id).first()
    if intervention is None:
        raise NotFoundError("Intervention not found")
    return intervention


@transaction.atomic
def intervention_update(*, user: Any, intervention_id: Any, **fields: Any) -> Intervention:
    intervention = intervention_get(user=user, intervention_id=intervention_id)
    intervention = Intervention.objects.select_for_update().get(pk=intervention.pk)
    changed = []
    for name, value in fields.items():
        if name in WRITABLE_FIELDS:
            setattr(intervention, name, value)
            changed.append(name)
    if "status" in fields and intervention.status == Intervention.Status.COMPLETED and not intervention.completed_at:
        intervention.completed_at = timezone.now()
        changed.append("completed_at")
    if changed:
        intervention.save(update_fields=sorted(set(changed)))
    return intervention


def _ids_or_404(ids: Iterable[int], visible: set[int], noun: str) -> None:
    missing = sorted(set(ids) - visible)
    if missing:
        shown = ", ".join(str(i) for i in missing[:20])
        raise NotFoundError(f"{noun} not found: {shown}")


BULK_ACTIONS = ("complete", "fail", "escalate")


@transaction.atomic
def intervention_bulk_action(*, user: Any, ids: list[int], action: str, notes: str = "") -> list[int]:
    """Apply one action to every listed intervention, or to none if any id is not visible."""
    ids = list(dict.fromkeys(ids))
    rows = list(intervention_scope(user=user).select_for_update().filter(pk__in=ids).order_by("pk"))
    _ids_or_404(ids, {row.pk for row in rows}, "Interventions")
    now = timezone.now()
    for row in rows:
        if action == "complete":
            row.status, row.completed_at = Intervention.Status.COMPLETED, row.completed_at or now
        elif action == "fail":
            row.status = Intervention.Status.CANCELLED
        elif action == "escalate":
            row.priority = Intervention.Priority.HIGH
        if notes:
            row.notes = f"{row.notes}\n{notes}".strip()
    Intervention.objects.bulk_update(rows, ["status", "completed_at", "priority", "notes"])
    return [row.pk for row in rows]


@transaction.atomic
def intervention_bulk_apply(*, user: Any, customer_ids: list[int], intervention_type: str, notes: str = "") -> int:
    """Create one intervention of a type for each listed customer (all visible, or nothing)."""
    customer_ids = list(dict.fromkeys(customer_ids))
    customers = list(customer_scope(user=user).filter(pk__in=customer_ids).select_related("owner"))
    _ids_or_404(customer_ids, {c.pk for c in customers}, "Customers")
    Intervention.objects.bulk_create(
        [
            Intervention(
                customer=customer,
                type=intervention_type,
                status=Intervention.Status.ACTIVE,
                priority=Intervention.Priority.MEDIUM,
                assigned_csm=_owner_name(customer),
                notes=notes,
                created_by=user,
            )
            for customer in customers
        ]
    )
    return len(customers)


@transaction.atomic
def intervention_outcome_record(
    *, user: Any, customer_id: int, intervention_type: str, success: bool, revenue_impact: Decimal | None = None
) -> Intervention:
    """Record whether an intervention kept the customer (`POST /api/ml/update-outcome`).

    The customer's latest intervention of that type without an outcome gets it (completing it if
    still open); when there is none, a completed intervention records the outcome.
    """
    customer = customer_get(user=user, customer_id=customer_id)
    outcome = Intervention.Outcome.SUCCEEDED if success else Intervention.Outcome.FAILED
    intervention = (
        Intervention.objects.select_for_update()
        .filter(customer=customer, type__iexact=intervention_type, outcome__isnull=True)
        .order_by("-created_at", "-id")
        .first()
    )
    if intervention is None:
        intervention = Intervention(
            customer=customer,
            type=intervention_type,
            assigned_csm=_owner_name(customer),
            created_by=user,
            notes="Outcome recorded from the app.",
        )
    intervention.outcome = outcome
    intervention.revenue_impact = revenue_impact
    if intervention.status != Intervention.Status.COMPLETED:
        intervention.status = Intervention.Status.COMPLETED
        intervention.completed_at = intervention.completed_at or timezone.now()
    intervention.save()
    return intervention
