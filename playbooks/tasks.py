"""Celery entry points for playbooks: thin, primitive arguments, safe to run twice."""

from celery import shared_task
from django.conf import settings

from playbooks import engine, rules


def chunks(ids: list[int], size: int) -> list[list[int]]:
    size = max(size, 1)
    return [ids[offset : offset + size] for offset in range(0, len(ids), size)]


@shared_task(acks_late=True, ignore_result=True, time_limit=300, soft_time_limit=240)
def run_playbook_execution(execution_id: int, token: str) -> str:
    """Drive one execution; a stale token (another claim took over) does nothing."""
    return engine.run_execution(execution_id=execution_id, token=token)


@shared_task(acks_late=True, ignore_result=True, time_limit=600, soft_time_limit=540)
def run_playbook_executions(execution_ids: list[int], token: str) -> int:
    """Drive a chunk of executions claimed with one token (one message for many executions)."""
    return engine.run_executions(execution_ids=execution_ids, token=token)


def dispatch(execution_ids: list[int], token: str, *, queue: str | None = None, chunk_size: int | None = None) -> None:
    """One task per chunk of `PLAYBOOK_DISPATCH_CHUNK` executions (or `chunk_size`)."""
    for chunk in chunks(execution_ids, chunk_size or settings.PLAYBOOK_DISPATCH_CHUNK):
        run_playbook_executions.apply_async((chunk, token), queue=queue or None)


@shared_task(acks_late=True, ignore_result=True, time_limit=120, soft_time_limit=100)
def claim_due_executions() -> int:
    """Beat: claim due waits, retries and expired leases (SKIP LOCKED) and hand them to workers."""
    total = 0
    while True:
        token, ids = engine.claim_due(limit=settings.PLAYBOOK_CLAIM_BATCH)
        # Due work may have its own queue, so a burst of fresh enrolments cannot delay due waits.
        dispatch(ids, token, queue=settings.PLAYBOOK_DUE_QUEUE, chunk_size=settings.PLAYBOOK_DUE_DISPATCH_CHUNK)
        total += len(ids)
        if len(ids) < settings.PLAYBOOK_CLAIM_BATCH:
            return total


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def evaluate_trigger_rules(customer_ids: list[int] | None = None, kinds: list[str] | None = None) -> int:
    """Evaluate the automatic trigger rules (after the scoring batch, or for one customer's event)."""
    return sum(rules.evaluate_rules(customer_ids=customer_ids, kinds=kinds).values())
