"""Durable execution of playbook steps.

The cursor lives in the `playbook_executions` row: `current_step` (next step key), `next_run_at`
(when the claimer should drive it) and `lease_token` (which task may drive it now).

- A task drives an execution only while its token matches the row's (checked under a row lock in
  every transaction), so two deliveries of the same task, or a task and the claimer, never both
  advance it.
- Internal steps (intervention, alert, notify, customer update, condition, wait bookkeeping) run
  inside one transaction with their `playbook_step_runs` row (unique per execution and step key)
  and the cursor move: the effect is applied exactly once, or not at all.
- A customer-facing e-mail passes a gate first: unless the playbook auto-sends (and is under its
  daily cap) the step queues an `EmailReview` and the execution parks (no due time, no lease)
  until a person approves (then the step sends as below) or discards it (the step is skipped).
- External steps (e-mail, webhook) record "sending" and the attempt before the call and "succeeded"
  after it; the call carries the idempotency key `playbook-<execution>-<step>`. A crash inside the
  send window re-sends with the same key (at most one duplicate per crash, recorded in `attempts`).
- Every due time and lease is read and written against the DATABASE's clock (`Now()`, PostgreSQL's
  `statement_timestamp()`), never a process's: a worker or beat whose clock is minutes off neither
  fires a wait early nor sees a live lease as expired (tested under faketime: tests/faults).
- A wait stores its due time in `next_run_at` and clears the token; a retry does the same with a
  backoff. While a worker runs, `next_run_at` is the end of its lease: a SIGKILLed worker's
  execution is claimed again when the lease ends. The claimer (`claim_due`, a beat task) takes due
  rows with `SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite has no row locks and runs one
  writer at a time, so the plain SELECT inside the write transaction is equivalent there), gives
  them a fresh token and enqueues them. Nothing is ever scheduled with a Celery countdown.
"""

import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alerts_publish_batched
from playbooks import steps as step_impl
from playbooks.definitions import EXTERNAL_STEPS, next_key
from playbooks.models import EmailReview, PlaybookExecution, PlaybookStepRun

log = logging.getLogger(__name__)
Status = PlaybookExecution.Status
RunStatus = PlaybookStepRun.Status
MAX_STEPS_PER_TRANSACTION = 60


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def lease_until(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=settings.PLAYBOOK_LEASE_SECONDS)


def queued_until(now: dt.datetime) -> dt.datetime:
    """How long a handed-out execution may sit in the broker before the claimer presumes its message
    lost. Longer than a worker's lease: a backlog of fresh enrolments must not expire in the queue,
    or the claimer would re-claim it (most overdue first) ahead of the due waits behind it."""
    return now + dt.timedelta(seconds=settings.PLAYBOOK_QUEUED_LEASE_SECONDS)


def _db_lease(seconds: float) -> ExpressionWrapper:
    return ExpressionWrapper(Now() + dt.timedelta(seconds=seconds), output_field=DateTimeField())


def db_now() -> dt.datetime:
    """The database's clock, the one clock every due time and lease is compared with (one query).

    Processes' clocks drift apart (a worker minutes ahead would fire waits early and take live
    leases); the database is the one place they all meet. SQLite has no clock of its own: it reads
    the clock of the process that embeds it, the only process of the embedded topology."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter, capped: a failing step is retried within minutes, never hours apart."""
    ceiling = min(settings.PLAYBOOK_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0), settings.PLAYBOOK_RETRY_MAX_SECONDS)
    return random.uniform(ceiling / 2, ceiling)


def _record(execution: PlaybookExecution, run: PlaybookStepRun) -> None:
    """Mirror a step run into `result["steps"]` (outcome, timing, attempts, error, output)."""
    entry = {
        "key": run.step_key,
        "type": run.step_type,
        "status": run.status,
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso(run.finished_at),
        "durationMs": round((run.finished_at - run.started_at).total_seconds() * 1000, 1) if run.finished_at else None,
        "attempts": run.attempts,
        "error": run.error or None,
        "output": run.output,
    }
    if run.due_at:
        entry["dueAt"] = _iso(run.due_at)
    recorded = execution.result.setdefault("steps", [])
    for index, item in enumerate(recorded):
        if item.get("key") == run.step_key:
            recorded[index] = entry
            return
    recorded.append(entry)


def _definition(execution: PlaybookExecution) -> list[dict]:
    return execution.result.get("definition") or execution.playbook.steps


def _finish(execution: PlaybookExecution, status: str, now: dt.datetime, **result: Any) -> None:
    execution.status = status
    execution.completed_at = now
    execution.next_run_at = None
    execution.lease_token = ""
    execution.current_step = "" if status == Status.COMPLETED else execution.current_step
    execution.result.update(result)
    execution.result["durationSeconds"] = round((now - execution.started_at).total_seconds(), 3)


def _fail(execution: PlaybookExecution, run: PlaybookStepRun | None, error: str, now: dt.datetime) -> None:
    if run is not None:
        run.status, run.error, run.finished_at = RunStatus.FAILED, error[:2000], now
        run.save()
        _record(execution, run)
    execution.error = error[:2000]
    _finish(execution, Status.FAILED, now, error=execution.error, failedStep=execution.current_step)
    execution.save()
    step_impl.raise_alert(
        title=f"Playbook failed: {execution.playbook.name}",
        message=f"{execution.playbook.name} stopped for {execution.customer.name} at step "
        f"{execution.current_step}: {error[:500]}",
        severity="high",
        customer_id=execution.customer_id,
        source=Alert.Source.PLAYBOOK_STEP_FAILED,
    )


def _locked(execution_id: int, token: str) -> PlaybookExecution | None:
    """The execution under a row lock if `token` still holds it; `db_now` is the database's clock
    (read by the same statement, so it costs no round trip)."""
    execution = (
        PlaybookExecution.objects.select_for_update(of=("self",))
        .select_related("playbook", "customer", "customer__owner", "intervention")
        .annotate(db_now=Now())
        .filter(pk=execution_id)
        .first()
    )
    if execution is None or execution.status != Status.RUNNING or execution.lease_token != token:
        return None
    return execution


def _exit_reason(execution: PlaybookExecution, now: dt.datetime) -> str | None:
    conditions = execution.playbook.exit_conditions or []
    if not conditions:
        return None
    context = step_impl.customer_context(execution.customer, execution.intervention, now)
    for condition in conditions:
        if step_impl.condition_holds(condition, context):
            return f"exit condition met: {condition}"
    return None


class _Abort(Exception):
    """A step raised in a fast (savepoint-free) pass: roll it all back and redo the pass carefully."""


def _save_run(run: PlaybookStepRun, pending: list[PlaybookStepRun]) -> None:
    """New runs wait in `pending` (one INSERT for all before commit); existing ones are updated."""
    if run.pk is not None:
        run.save()
    elif not any(item is run for item in pending):
        pending.append(run)


def _flush(pending: list[PlaybookStepRun]) -> None:
    if pending:
        PlaybookStepRun.objects.bulk_create(pending)
        pending.clear()


def _step_runs(execution: PlaybookExecution) -> dict[str, PlaybookStepRun]:
    """The execution's step runs by key. Every run is mirrored in `result["steps"]` in the transaction
    that writes it, except an in-flight "sending" one, which leaves `attempts` above 0: with neither,
    there is no run to load (a fresh execution). The unique key stays the last word either way."""
    if not execution.result.get("steps") and not execution.attempts:
        return {}
    return {run.step_key: run for run in execution.step_runs.all()}


def _drive_internal(execution_id: int, token: str) -> tuple[dict | None, str]:
    """Run internal steps in one transaction until a wait, an external step or the end.

    Returns the external step to call next (the row now records "sending"), or None to stop, and the
    execution's status ("" when the token is stale). The first pass runs the steps without savepoints;
    if a step raises, the whole transaction rolls back (no effect kept) and a careful pass redoes it
    with a savepoint per step, so the failure is recorded next to the steps that did succeed.
    """
    try:
        return _drive_pass(execution_id, token, careful=False)
    except _Abort:
        return _drive_pass(execution_id, token, careful=True)


def _drive_pass(execution_id: int, token: str, *, careful: bool) -> tuple[dict | None, str]:
    pending: list[PlaybookStepRun] = []
    with transaction.atomic():
        execution = _locked(execution_id, token)
        if execution is None:
            return None, ""
        now = execution.db_now  # the database's clock: due times and leases are compared with it
        clock = time.perf_counter()
        steps = _definition(execution)
        by_key = {step["key"]: step for step in steps}
        runs = _step_runs(execution)
        for _ in range(MAX_STEPS_PER_TRANSACTION):
            if not execution.current_step:
                _finish(execution, Status.COMPLETED, now)
                break
            reason = _exit_reason(execution, now)
            if reason:
                _finish(execution, Status.COMPLETED, now, exited=reason)
                break
            step = by_key.get(execution.current_step)
            if step is None:
                _flush(pending)
                _fail(execution, None, f"unknown step {execution.current_step!r}", now)
                return None, execution.status
            run = runs.get(step["key"])
            if step["type"] in EXTERNAL_STEPS:
                verdict, run = _email_gate(execution, step, run, now, pending)
                if verdict == PARK:
                    _flush(pending)
                    execution.save()
                    return None, execution.status
                if verdict == SKIP:
                    runs[step["key"]] = run
                    execution.current_step = next_key(steps, step["key"], step.get("next"))
                    continue
                step = _start_external(execution, step, run, now, pending)
                return step, execution.status
            if step["type"] == "wait":
                if not _wait_over(execution, step, run, runs, now, pending):
                    _flush(pending)
                    execution.save()
                    return None, execution.status
                continue
            if run is not None and run.status == RunStatus.SUCCEEDED:  # defensive: never apply twice
                execution.current_step = next_key(steps, step["key"], step.get("next"))
                continue
            handler = step_impl.INTERNAL_HANDLERS[step["type"]]
            if not careful:
                try:
                    outcome = handler(execution, step, now)
                except Exception as exc:
                    raise _Abort from exc
            else:
                try:
                    with transaction.atomic():  # a savepoint: a failed step leaves no partial effect
                        outcome = handler(execution, step, now)
                except step_impl.PermanentStepError as exc:
                    _flush(pending)
                    run = PlaybookStepRun(
                        execution=execution, step_key=step["key"], step_type=step["type"], status=RunStatus.FAILED,
                        started_at=now, attempts=1,
                    )  # fmt: skip
                    _fail(execution, run, str(exc), now)
                    return None, execution.status
                except Exception as exc:
                    log.exception("playbook step %s of execution %s failed", step["key"], execution.pk)
                    _flush(pending)
                    execution.attempts += 1
                    if execution.attempts >= settings.PLAYBOOK_MAX_ATTEMPTS:
                        _fail(execution, None, f"{step['type']}: {type(exc).__name__}: {exc}", now)
                        return None, execution.status
                    execution.error = f"{type(exc).__name__}: {exc}"[:2000]
                    execution.next_run_at = now + dt.timedelta(seconds=backoff_seconds(execution.attempts))
                    execution.lease_token = ""
                    execution.save()
                    return None, execution.status
            run = PlaybookStepRun(
                execution=execution,
                step_key=step["key"],
                step_type=step["type"],
                status=RunStatus.SUCCEEDED,
                started_at=now,
                finished_at=now + dt.timedelta(seconds=time.perf_counter() - clock),
                attempts=1,
                output=outcome.output,
            )
            pending.append(run)
            runs[step["key"]] = run
            _record(execution, run)
            execution.current_step = next_key(steps, step["key"], outcome.next or step.get("next"))
            execution.attempts = 0
        else:
            execution.next_run_at = lease_until(now)
        # The step records and the cursor commit with the effects: all of them, or none.
        _flush(pending)
        execution.save()
    return None, execution.status


def _wait_over(
    execution: PlaybookExecution,
    step: dict,
    run: PlaybookStepRun | None,
    runs: dict,
    now: dt.datetime,
    pending: list[PlaybookStepRun],
) -> bool:
    """Whether the wait at the cursor is over (then the cursor has moved on); otherwise park it."""
    if run is None:
        due, deadline = step_impl.wait_due(step, now, now)
        run = PlaybookStepRun(
            execution=execution,
            step_key=step["key"],
            step_type="wait",
            status=RunStatus.WAITING,
            started_at=now,
            due_at=due,
            output={"deadline": _iso(deadline)},
        )
        runs[step["key"]] = run
    outcome = None
    if "until" in step:
        context = step_impl.customer_context(execution.customer, execution.intervention, now)
        deadline = dt.datetime.fromisoformat(run.output["deadline"].replace("Z", "+00:00"))
        if step_impl.condition_holds(step["until"], context):
            outcome = "condition_met"
        elif now >= deadline:
            outcome = "timed_out"
        else:
            run.due_at = step_impl.wait_due(step, run.started_at, now)[0]
    elif now >= run.due_at:
        outcome = "elapsed"
    if outcome is None:
        _save_run(run, pending)
        _record(execution, run)
        execution.next_run_at, execution.lease_token = run.due_at, ""
        return False
    run.status, run.finished_at = RunStatus.SUCCEEDED, now
    run.output = {**run.output, "outcome": outcome, "lagSeconds": round((now - run.due_at).total_seconds(), 3)}
    run.attempts += 1
    _save_run(run, pending)
    _record(execution, run)
    execution.current_step = next_key(_definition(execution), step["key"], step.get("next"))
    return True


SEND, PARK, SKIP = "send", "park", "skip"


def _auto_send_refusal(execution: PlaybookExecution, now: dt.datetime) -> str | None:
    """Why a customer e-mail may not go out by itself now (an `EmailReview.Reason`), or None.

    The playbook's row is locked while its last day's automatic sends are counted, so concurrent
    workers cannot all pass the cap at once; the count includes the run this gate is about to start
    (it commits with the lock held)."""
    playbook = execution.playbook
    if not playbook.auto_send_customer_emails:
        return EmailReview.Reason.REVIEW
    type(playbook).objects.select_for_update().filter(pk=playbook.pk).values_list("pk").first()
    sent = PlaybookStepRun.objects.filter(
        execution__playbook_id=playbook.pk,
        step_type="send_email",
        started_at__gte=now - dt.timedelta(days=1),
        output__autoSent=True,
    ).count()
    if sent >= settings.PLAYBOOK_CUSTOMER_EMAIL_DAILY_CAP:
        return EmailReview.Reason.DAILY_CAP
    return None


def _email_gate(
    execution: PlaybookExecution,
    step: dict,
    run: PlaybookStepRun | None,
    now: dt.datetime,
    pending: list[PlaybookStepRun],
) -> tuple[str, PlaybookStepRun | None]:
    """Whether the external step at the cursor may go out now (SEND), waits for review (PARK) or
    was discarded (SKIP), and its step run. Only customer-facing e-mails are held."""
    if step["type"] != "send_email" or (run is not None and run.status in (RunStatus.SENDING, RunStatus.RETRYING)):
        return SEND, run  # not an e-mail, or it passed the gate before this attempt
    if not step_impl.is_customer_facing(step, execution.customer):
        return SEND, run
    if run is None:
        run = PlaybookStepRun(
            execution=execution, step_key=step["key"], step_type=step["type"], started_at=now, attempts=0
        )
    review = EmailReview.objects.filter(execution=execution, step_key=step["key"]).first()
    if review is None:
        reason = _auto_send_refusal(execution, now)
        if reason is None:
            run.output = {**run.output, "customerFacing": True, "autoSent": True}
            return SEND, run
        content = step_impl.render_email(customer=execution.customer, playbook_name=execution.playbook.name, step=step)
        review = EmailReview.objects.create(
            execution=execution,
            step_key=step["key"],
            playbook_id=execution.playbook_id,
            customer_id=execution.customer_id,
            reason=reason,
            **content,
        )
    run.output = {**run.output, "customerFacing": True, "reviewId": review.pk, "review": review.status}
    if review.status == EmailReview.Status.APPROVED:
        return SEND, run
    if review.status == EmailReview.Status.DISCARDED:
        run.status, run.finished_at = RunStatus.SKIPPED, now
        _save_run(run, pending)
        _record(execution, run)
        return SKIP, run
    run.status = RunStatus.WAITING
    run.output["reason"] = review.reason
    _save_run(run, pending)
    _record(execution, run)
    execution.next_run_at, execution.lease_token = None, ""  # parked: only a decision wakes it
    return PARK, run


def _start_external(
    execution: PlaybookExecution,
    step: dict,
    run: PlaybookStepRun | None,
    now: dt.datetime,
    pending: list[PlaybookStepRun],
) -> dict | None:
    """Record "sending" (and the attempt) before the outside call; commit with the caller."""
    if run is None:
        run = PlaybookStepRun(
            execution=execution, step_key=step["key"], step_type=step["type"], started_at=now, attempts=0
        )
    elif run.status == RunStatus.SENDING:
        # A previous attempt died inside the send window: this one may duplicate it (same key).
        run.output = {**run.output, "resentAfterCrash": run.output.get("resentAfterCrash", 0) + 1}
    run.status = RunStatus.SENDING
    run.attempts += 1
    _save_run(run, pending)
    _flush(pending)
    execution.attempts = run.attempts
    execution.next_run_at = lease_until(now)
    execution.save()
    return step


def _finish_external(execution_id: int, token: str, step: dict) -> tuple[bool, str]:
    """Make the outside call, then record its outcome. Returns whether to keep driving, and the status."""
    error: Exception | None = None
    output: dict = {}
    started = time.perf_counter()
    execution = PlaybookExecution.objects.select_related("playbook", "customer", "customer__owner").get(pk=execution_id)
    if step["type"] == "send_email":
        # A reviewed e-mail goes out as the reviewer approved it (maybe edited), not re-rendered.
        reviewed = (
            EmailReview.objects.filter(execution_id=execution_id, step_key=step["key"], status="approved")
            .values("to", "subject", "body")
            .first()
        )
        if reviewed:
            step = {**step, "rendered": reviewed}
    try:
        output = step_impl.run_external(execution, step)
    except (step_impl.TransientStepError, step_impl.PermanentStepError) as exc:
        error = exc
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    with transaction.atomic():
        execution = _locked(execution_id, token)
        if execution is None:  # cancelled, or another claim took over while we called out
            return False, ""
        now = execution.db_now
        run = execution.step_runs.get(step_key=step["key"])
        if error is None:
            run.status, run.finished_at, run.error = RunStatus.SUCCEEDED, now, ""
            run.output = {**run.output, **output, "callMs": elapsed_ms}
            run.save()
            _record(execution, run)
            if "rendered" in step:
                EmailReview.objects.filter(execution_id=execution_id, step_key=step["key"]).update(sent_at=now)
            execution.current_step = next_key(_definition(execution), step["key"], step.get("next"))
            execution.attempts = 0
            execution.next_run_at = lease_until(now)
            execution.save()
            return True, execution.status
        if isinstance(error, step_impl.TransientStepError) and run.attempts < settings.PLAYBOOK_MAX_ATTEMPTS:
            delay = backoff_seconds(run.attempts)
            run.status, run.error = RunStatus.RETRYING, str(error)[:2000]
            run.save()
            _record(execution, run)
            execution.next_run_at, execution.lease_token = now + dt.timedelta(seconds=delay), ""
            execution.save()
            return False, execution.status
        reason = (
            str(error)
            if isinstance(error, step_impl.PermanentStepError)
            else f"{error} (after {run.attempts} attempts)"
        )
        _fail(execution, run, reason, now)
        return False, execution.status


def run_execution(*, execution_id: int, token: str) -> str:
    """Drive one execution as far as it can go now. Idempotent: a stale token does nothing ("")."""
    status = ""
    for _ in range(MAX_STEPS_PER_TRANSACTION):
        step, status = _drive_internal(execution_id, token)
        if step is None:
            break
        keep_going, status = _finish_external(execution_id, token, step)
        if not keep_going:
            break
    return status


def hold(*, execution_ids: list[int], token: str) -> int:
    """A worker takes over handed-out executions: their queued lease becomes a worker's lease
    (PLAYBOOK_LEASE_SECONDS from the database's now), so a worker killed now is noticed soon, while
    messages still in the broker keep their longer queued lease. One UPDATE for a chunk."""
    return PlaybookExecution.objects.filter(pk__in=execution_ids, lease_token=token, status=Status.RUNNING).update(
        next_run_at=_db_lease(settings.PLAYBOOK_LEASE_SECONDS)
    )


def run_executions(*, execution_ids: list[int], token: str) -> int:
    """Drive a chunk of executions one after the other (one Celery task for many); each in its own
    transactions, so one failing execution never touches another. Returns how many finished."""
    finished = 0
    hold(execution_ids=execution_ids, token=token)
    # The chunk's alerts reach the live feed and the notification fan-out once, after the chunk.
    with alerts_publish_batched():
        for execution_id in execution_ids:
            try:
                status = run_execution(execution_id=execution_id, token=token)
            except DatabaseError:  # e.g. a lost connection: its lease runs out and the claimer retries it
                log.exception("playbook execution %s stopped on a database error", execution_id)
                connection.close_if_unusable_or_obsolete()
                continue
            finished += status in (Status.COMPLETED, Status.FAILED)
    return finished


def claim_due(*, limit: int = 500) -> tuple[str, list[int]]:
    """Claim running executions that are due (waits over, retries due, leases expired).

    Returns the claim token and the ids, most overdue first; the caller enqueues them. Rows another
    claimer holds are skipped (PostgreSQL), so concurrent claimers never take the same execution.
    "Due" and the queued lease are the database's `Now()`: the claimer's own clock plays no part.
    """
    token = uuid.uuid4().hex
    lease = _db_lease(settings.PLAYBOOK_QUEUED_LEASE_SECONDS)
    with transaction.atomic():
        due = (
            PlaybookExecution.objects.filter(status=Status.RUNNING, next_run_at__lte=Now())
            .order_by("next_run_at")
            .values_list("pk", flat=True)
        )
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due[:limit])
        if ids:
            PlaybookExecution.objects.filter(pk__in=ids).update(lease_token=token, next_run_at=lease)
    return token, ids


FOLLOWER_LOCK_KEY = 0x706C6179  # "play": a PostgreSQL advisory lock id for the one following claimer


@contextlib.contextmanager
def follower() -> Iterator[bool]:
    """Whether this claimer may follow due times (only one at a time: a beat tick arriving while
    another claimer follows claims once and leaves). SQLite runs one writer at a time: always yes.

    The lock is a transaction-level advisory lock, held by a transaction left open on a connection
    of its own while this claimer follows: it ends on exit, or with a killed worker's connection.
    A session-level lock would break behind a transaction-mode pooler (PgBouncer, Neon, Supabase):
    taken on one server connection and released on another, it would stay held for good."""
    if connection.vendor != "postgresql":
        yield True
        return
    holder = connection.copy()
    try:
        holder.set_autocommit(False)
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [FOLLOWER_LOCK_KEY])
            held = cursor.fetchone()[0]
        if not held:  # hand the (pooled) connection back at once rather than idle in a transaction
            holder.rollback()
            holder.close()
        yield held
    finally:
        if holder.connection is not None:
            holder.rollback()
            holder.close()


def seconds_until_due() -> float | None:
    """Seconds until the earliest running execution falls due, by the database's clock (≤ 0: one is
    due now); None when nothing is running. One indexed read (`playbook_exec_due_idx`)."""
    row = (
        PlaybookExecution.objects.filter(status=Status.RUNNING, next_run_at__isnull=False)
        .annotate(db_now=Now())
        .order_by("next_run_at")
        .values_list("next_run_at", "db_now")
        .first()
    )
    return None if row is None else (row[0] - row[1]).total_seconds()
