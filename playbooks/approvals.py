"""Writes that keep automation safe: decisions on queued customer e-mails, the per-playbook auto-send
switch, and a manager's go-ahead for a trigger rule's automatic enrolment.

A queued e-mail's execution is parked at the e-mail step (no due time, no lease); a decision gives
it a fresh lease token and hands it to a worker after commit, and the engine then sends the
approved text (same idempotency key as any playbook e-mail) or skips the discarded step.
"""

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from core.auth.roles import Role, can_write, role_of
from core.exceptions import ConflictError, NotFoundError
from playbooks import engine, rules, selectors
from playbooks.models import EmailReview, Playbook, PlaybookExecution, TriggerRule
from playbooks.services import enqueue

Status = EmailReview.Status
MANAGING_ROLES = (Role.ADMIN, Role.MANAGER)


def is_manager(user: Any) -> bool:
    return role_of(user) in MANAGING_ROLES


# --- Queued customer e-mails --------------------------------------------------------------------


def _review_for_update(*, user: Any, review_id: Any) -> EmailReview:
    """The review under a row lock if the user may decide it: 404 outside their scope (as the API
    answers for any object), 403 for a role that never writes (viewers)."""
    try:
        review_id = int(review_id)
    except (TypeError, ValueError):
        raise NotFoundError("E-mail review not found") from None
    if not selectors.email_review_scope(user=user).filter(pk=review_id).exists():
        raise NotFoundError("E-mail review not found")
    if not can_write(user):
        raise PermissionDenied("Your role cannot approve or discard e-mails.")
    return EmailReview.objects.select_for_update().get(pk=review_id)


def _wake(execution_id: int) -> None:
    """Hand a parked execution back to the workers (after commit) with a fresh lease token."""
    execution = PlaybookExecution.objects.select_for_update().get(pk=execution_id)
    if execution.status != PlaybookExecution.Status.RUNNING:
        return
    token = uuid.uuid4().hex
    execution.lease_token, execution.next_run_at = token, engine.queued_until(engine.db_now())
    execution.save(update_fields=["lease_token", "next_run_at"])
    enqueue([execution.pk], token)


@transaction.atomic
def email_review_approve(
    *, user: Any, review_id: Any, subject: str | None = None, body: str | None = None
) -> EmailReview:
    """Approve a queued e-mail (optionally with an edited subject and body); the execution sends it.

    Approving an approved e-mail again without edits changes nothing (a double click sends once)."""
    review = _review_for_update(user=user, review_id=review_id)
    edits = {name: value for name, value in (("subject", subject), ("body", body)) if value is not None}
    if review.status == Status.APPROVED and not edits:
        return review
    if review.status != Status.PENDING:
        raise ConflictError(f"This e-mail is already {review.status}.")
    running = PlaybookExecution.objects.filter(pk=review.execution_id, status=PlaybookExecution.Status.RUNNING)
    if not running.exists():
        raise ConflictError("The playbook execution of this e-mail is no longer running.")
    if "subject" in edits:
        edits["subject"] = edits["subject"].replace("\n", " ").strip()[:500]
        if not edits["subject"]:
            raise ConflictError("The subject cannot be empty.")
    changed = {name: value for name, value in edits.items() if value != getattr(review, name)}
    for name, value in changed.items():
        setattr(review, name, value)
    review.is_edited = review.is_edited or bool(changed)
    review.status, review.decided_by, review.decided_at = Status.APPROVED, user, engine.db_now()
    review.save()
    _wake(review.execution_id)
    return review


@transaction.atomic
def email_review_discard(*, user: Any, review_id: Any, note: str = "") -> EmailReview:
    """Discard a queued e-mail: nothing is sent, the execution skips the step (recorded) and goes on."""
    review = _review_for_update(user=user, review_id=review_id)
    if review.status == Status.DISCARDED:
        return review
    if review.status != Status.PENDING:
        raise ConflictError(f"This e-mail is already {review.status}.")
    review.status, review.decided_by, review.decided_at = Status.DISCARDED, user, engine.db_now()
    review.note = note[:1000]
    review.save()
    _wake(review.execution_id)
    return review


def email_reviews_decide(*, user: Any, review_ids: list[Any], approve: bool) -> dict:
    """Approve or discard many (each in its own transaction: one that cannot be decided, e.g. already
    discarded, does not hold back the others). Returns `{done: [ids], problems: {id: message}}`."""
    operation = email_review_approve if approve else email_review_discard
    done, problems = [], {}
    for review_id in review_ids:
        try:
            operation(user=user, review_id=review_id)
            done.append(review_id)
        except (ConflictError, NotFoundError, PermissionDenied) as exc:
            problems[review_id] = str(exc) or "not allowed"
    return {"done": done, "problems": problems}


# --- Auto-send ----------------------------------------------------------------------------------


@transaction.atomic
def playbook_auto_send_set(*, user: Any, playbook_id: int, enabled: bool) -> Playbook:
    """Let a playbook e-mail customers without review (up to the daily cap), or stop it. Managers only."""
    if not is_manager(user):
        raise PermissionDenied("Only a manager can change whether a playbook e-mails customers without review.")
    playbook = Playbook.objects.select_for_update().filter(pk=playbook_id).first()
    if playbook is None:
        raise NotFoundError("Playbook not found")
    playbook.auto_send_customer_emails = enabled
    playbook.save(update_fields=["auto_send_customer_emails"])
    return playbook


# --- Rule go-ahead ------------------------------------------------------------------------------


@transaction.atomic
def trigger_rule_approve(*, user: Any, rule_id: Any) -> TriggerRule:
    """A manager's go-ahead for a rule's automatic enrolment, stored with the dry-run summary it was
    given on (who, when, what it would do). Holds until the rule changes."""
    if not is_manager(user):
        raise PermissionDenied("Only a manager can let a rule enrol customers by itself.")
    rule = TriggerRule.objects.select_for_update(of=("self",)).select_related("playbook").filter(pk=rule_id).first()
    if rule is None:
        raise NotFoundError("Trigger rule not found")
    if not (rule.is_active and rule.playbook.is_active):
        raise ConflictError("Activate the rule and its playbook before giving the go-ahead.")
    rule.approval_summary = selectors.rule_preview(user=user, rule=rule).approval_summary()
    rule.approved_at, rule.approved_by = engine.db_now(), user
    rule.approved_fingerprint = rules.rule_fingerprint(rule)
    rule.save(update_fields=["approval_summary", "approved_at", "approved_by", "approved_fingerprint"])
    return rule


def trigger_rule_pause(*, rule: TriggerRule) -> None:
    """Withdraw a rule's go-ahead (it was switched on again, or changed): it enrols no one until the next."""
    TriggerRule.objects.filter(pk=rule.pk).update(
        approved_at=None, approved_by=None, approval_summary={}, approved_fingerprint=""
    )
