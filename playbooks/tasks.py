"""Celery entry points for playbooks: thin, primitive arguments, safe to run twice."""

import time

from celery import shared_task
from django.conf import settings

from playbooks import engine, services
from playbooks.services import dispatch

FOLLOW_MIN_PAUSE_SECONDS = 0.02
# The follower looks again at least this often, so a short wait parked meanwhile is not overslept.
FOLLOW_MAX_PAUSE_SECONDS = 0.25


@shared_task(acks_late=True, ignore_result=True, time_limit=300, soft_time_limit=240)
def run_playbook_execution(execution_id: int, token: str) -> str:
    """Drive one execution; a stale token (another claim took over) does nothing."""
    engine.hold(execution_ids=[execution_id], token=token)
    return engine.run_execution(execution_id=execution_id, token=token)


@shared_task(acks_late=True, ignore_result=True, time_limit=600, soft_time_limit=540)
def run_playbook_executions(execution_ids: list[int], token: str) -> int:
    """Drive a chunk of executions claimed with one token (one message for many executions)."""
    return engine.run_executions(execution_ids=execution_ids, token=token)


@shared_task(acks_late=True, ignore_result=True, time_limit=120, soft_time_limit=100)
def claim_due_executions() -> int:
    """Beat: claim due waits, retries and expired leases (SKIP LOCKED) and hand them to workers.

    Claims again at once while a full batch came back (more is due). Then, for up to
    PLAYBOOK_CLAIM_FOLLOW_SECONDS, it sleeps until the next due time (the database's clock) and
    claims it then, so a wait falling due between two beat ticks starts at its due time instead of
    at the next tick, and due work reaches the workers as a stream, not a burst per tick. What the
    follower claims a few at a time it drives itself; larger batches go to the due queue in chunks.
    """
    total = 0
    follow_until = time.monotonic() + settings.PLAYBOOK_CLAIM_FOLLOW_SECONDS
    with engine.follower() as follows:
        while True:
            token, ids = engine.claim_due(limit=settings.PLAYBOOK_CLAIM_BATCH)
            if follows and ids and len(ids) <= settings.PLAYBOOK_DUE_DISPATCH_CHUNK:
                # The follower claims a few at a time, as they fall due: it drives them itself (no
                # broker hop, no queue to wait in) instead of sleeping while a worker picks them up.
                engine.run_executions(execution_ids=ids, token=token)
            else:
                # Due work may have its own queue, so a burst of fresh enrolments cannot delay it.
                dispatch(ids, token, queue=settings.PLAYBOOK_DUE_QUEUE, chunk_size=settings.PLAYBOOK_DUE_DISPATCH_CHUNK)
            total += len(ids)
            if len(ids) >= settings.PLAYBOOK_CLAIM_BATCH:
                continue
            left = follow_until - time.monotonic()
            until_due = engine.seconds_until_due() if follows and left > 0 else None
            if until_due is None or until_due >= left:
                return total
            # A due row another claimer holds reads as due until it commits: never spin faster than this.
            time.sleep(min(max(until_due, FOLLOW_MIN_PAUSE_SECONDS), FOLLOW_MAX_PAUSE_SECONDS))


@shared_task(acks_late=True, ignore_result=True, time_limit=600, soft_time_limit=540)
def act_on_scores(customer_ids: list[int] | None = None) -> int:
    """After a scoring commits: record the matured outcomes (risk OUTCOME_DAYS later) of these
    customers' enrolments, then evaluate the trigger rules for them. One message for both: a
    real-time predict publishes it inside the request, and each publish costs the request about
    as much as its model call."""
    services.execution_outcomes_record(customer_ids=customer_ids)
    return sum(services.evaluate_rules(customer_ids=customer_ids).values())


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def evaluate_trigger_rules(customer_ids: list[int] | None = None, kinds: list[str] | None = None) -> int:
    """Evaluate the automatic trigger rules (after the scoring batch, or for one customer's event)."""
    return sum(services.evaluate_rules(customer_ids=customer_ids, kinds=kinds).values())
