"""Writes for integrations: receiving webhooks, draining them through the pipeline, pull syncs,
per-integration schedules, replay and retention."""

import datetime as dt
import json
import logging
import random
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DataError, IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.constants import OnConflict
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from alerts.models import Alert
from alerts.services import alert_create
from core.db import values_update
from core.enqueue import enqueue, enqueue_on_commit, task_named
from core.exceptions import ConflictError, NotFoundError
from customers.history.canonical import CanonicalEvent
from integrations.connectors import connector_for
from integrations.connectors.base import Delivery, NotSupported, SignatureError, without_nul
from integrations.connectors.generic import BadEvent
from integrations.connectors.http import PermanentError
from integrations.models import Integration, SyncRun, WebhookEvent
from integrations.pipeline import apply_events
from integrations.selectors import REJECTION_REASONS, receives_pushes_only, rejection_key

# The tasks import this module: they are enqueued by their registered names.
DRAIN_TASK = "integrations.tasks.drain_webhooks"
logger = logging.getLogger(__name__)
PENDING = (WebhookEvent.Status.RECEIVED, WebhookEvent.Status.RETRYING)


class UnusableEvent(Exception):
    """The stored body could not be turned into canonical events: the same body never will."""


# Errors no retry will fix: the event goes to the dead letters at once.
PERMANENT_ERRORS = (
    BadEvent,
    NotSupported,
    PermanentError,
    json.JSONDecodeError,
    KeyError,
    TypeError,
    UnusableEvent,
    DataError,
)
SCHEDULE_PREFIX = "integration-sync:"


# --- Webhooks: receive ----------------------------------------------------------------------------


def webhook_rejection_record(*, integration: Integration, error: SignatureError) -> None:
    """Log and count a refused delivery, so ops can tell our clock (or theirs) from a bad secret.

    The count lives in the cache (Redis in production) so every web process reports the same
    total; a cache failure must not turn the provider's 401 into a 500, so it is only logged.
    """
    reason = error.code if error.code in REJECTION_REASONS else "other"
    provider = integration.provider or "unknown"
    logger.warning(
        "webhook rejected (%s) for integration %s: %s",
        reason,
        integration.pk,
        error,
        extra={"reason": reason, "provider": provider, "integration_id": integration.pk},
    )
    key = rejection_key(provider, reason)
    try:
        cache.add(key, 0, timeout=None)
        cache.incr(key)
    except Exception:
        logger.exception("could not count a webhook rejection")


def webhook_verify(*, integration: Integration, delivery: Delivery) -> list[WebhookEvent]:
    """Check the signature (raises SignatureError) and build the rows to store. Touches no table."""
    try:
        events = connector_for(integration).verify(delivery)
    except SignatureError as error:
        webhook_rejection_record(integration=integration, error=error)
        raise
    now = timezone.now()
    return [
        WebhookEvent(
            integration_id=integration.pk,
            provider=integration.provider,
            # A NUL cannot be stored in a text column; escaped, so distinct ids stay distinct.
            event_id=event.event_id.replace("\x00", "\\u0000")[:500],
            event_type=event.event_type.replace("\x00", "\\u0000")[:200],
            body=event.body,
            received_at=now,
            next_attempt_at=now,
        )
        for event in events
    ]


# Rows per INSERT: far below PostgreSQL's 65,535 bind parameters (11 per row).
STORE_CHUNK = 2000


def webhook_store(*, rows: list[WebhookEvent], enqueue: bool = True) -> set[int]:
    """Insert verified events (a repeated event id is ignored: the dedupe) and enqueue after commit.

    The ASGI receiver calls this with the events of many concurrent deliveries at once, with
    `enqueue=False`: it enqueues the drains of the returned integrations itself, off the path the
    deliveries wait on. The row itself is the outbox if the enqueue is lost.

    Up to STORE_CHUNK rows are ONE statement in autocommit, atomic by itself: no BEGIN and COMMIT
    round trips, which is what a slow network to the database charges for.
    """
    fields = [f for f in WebhookEvent._meta.concrete_fields if not f.primary_key]
    chunks = [rows[start : start + STORE_CHUNK] for start in range(0, len(rows), STORE_CHUNK)]
    with transaction.atomic() if len(chunks) > 1 else nullcontext():
        for chunk in chunks:
            # bulk_create() always opens a transaction; its one-statement insert is _insert().
            WebhookEvent.objects._insert(chunk, fields=fields, on_conflict=OnConflict.IGNORE)  # type: ignore[attr-defined]
    integration_ids = {row.integration_id for row in rows}
    if enqueue:
        for integration_id in sorted(integration_ids):
            # Robust: the events are durable now; a drain that fails (in-process tasks run it right
            # here) must not turn their acknowledgement into an error. The sweeper retries it.
            transaction.on_commit(_drain_enqueuer(integration_id), robust=True)
    return integration_ids


def _drain_enqueuer(integration_id: int) -> Callable[[], None]:
    # A named function, not a partial: a robust on_commit logs the callback's __qualname__.
    def enqueue_drain_after_commit() -> None:
        enqueue_drain(integration_id=integration_id)

    return enqueue_drain_after_commit


def enqueue_drain(*, integration_id: int) -> None:
    """Schedule a drain at the end of a short window, once per window (trailing-edge debounce).

    The drain clears the window's key before it claims anything, so an event committed after that
    schedules the next drain. A failure to reach the broker is logged, not raised: the event is
    already stored, and the beat sweeper re-enqueues it; the delivery must still be answered 2xx.
    """
    window = drain_window_seconds()
    try:
        claimed = cache.add(drain_key(integration_id), 1, timeout=window)
    except Exception:  # cache down: the sweeper is the safety net
        logger.warning("could not enqueue the webhook drain of integration %s; the sweeper will", integration_id)
        return
    if claimed:
        enqueue(DRAIN_TASK, integration_id, countdown=window)


def drain_window_seconds() -> int:
    # Whole seconds: Redis expiries are, and a key outliving the countdown could strand an event.
    return max(1, round(settings.WEBHOOK_DRAIN_DEBOUNCE_SECONDS))


def drain_key(integration_id: int) -> str:
    return f"integrations:drain:{integration_id}"


# --- Webhooks: process -----------------------------------------------------------------------------


def _backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff with jitter: base·2^(n-1), capped, times a random factor in [0.5, 1]."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS
    delay = min(base * 2 ** max(attempts - 1, 0), settings.WEBHOOK_RETRY_MAX_SECONDS)
    return dt.timedelta(seconds=delay * random.uniform(0.5, 1.0))


def _claim(integration_id: int, limit: int) -> dict[int, int]:
    """Lease due pending events (id → attempt number); a crashed worker's lease simply expires."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(integration_id=integration_id, status__in=PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .values_list("id", "attempts")[:limit]
        )
        if not rows:
            return {}
        lease = now + dt.timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
        claims = {pk: attempts + 1 for pk, attempts in rows}
        WebhookEvent.objects.filter(pk__in=list(claims)).update(attempts=F("attempts") + 1, next_attempt_at=lease)
    return claims


def _transform(integration: Integration, row: WebhookEvent) -> list[CanonicalEvent]:
    try:
        payload = json.loads(row.body)
        if "\\u0000" in row.body:  # the only way a NUL reaches a UTF-8 JSON text
            payload = without_nul(payload)
        return connector_for(integration).transform(row.event_type, payload)
    except Exception as error:  # transform is pure: whatever it raises, a retry raises again
        raise UnusableEvent(f"{type(error).__name__}: {error}") from error


def webhooks_drain(*, integration_id: int, limit: int | None = None) -> int:
    """Process every due pending event of an integration, a batch at a time; returns how many."""
    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is None:
        return 0
    cache.delete(drain_key(integration_id))  # events committed from now on schedule the next drain
    batch_size = limit or settings.WEBHOOK_DRAIN_BATCH
    done = 0
    for _ in range(settings.WEBHOOK_DRAIN_MAX_BATCHES):
        claims = _claim(integration_id, batch_size)
        if not claims:
            break
        done += _process(integration, claims)
    _schedule_retry(integration_id)
    return done


def _process(integration: Integration, claims: dict[int, int]) -> int:
    """Transform and apply claimed events in one transaction with their `processed` mark.

    The batch is applied at once; if that fails, each event alone (in a savepoint) so one poison
    event cannot hold back the rest. The attempt count fences a lease that expired meanwhile.
    """
    now = timezone.now()
    with transaction.atomic():
        rows = [
            row
            for row in WebhookEvent.objects.select_for_update().filter(pk__in=list(claims), status__in=PENDING)
            if row.attempts == claims[row.pk]
        ]
        transformed: dict[int, list[CanonicalEvent]] = {}
        errors: dict[int, Exception] = {}
        for row in rows:
            try:
                transformed[row.pk] = _transform(integration, row)
            except Exception as error:
                errors[row.pk] = error
        try:
            with transaction.atomic():
                apply_events(integration_id=integration.pk, events=[e for pk in transformed for e in transformed[pk]])
        except Exception:
            for pk, events in transformed.items():
                try:
                    with transaction.atomic():
                        apply_events(integration_id=integration.pk, events=events)
                except Exception as error:
                    errors[pk] = error
        processed = [row for row in rows if row.pk not in errors]
        for row in processed:
            row.status, row.processed_at, row.last_error = WebhookEvent.Status.PROCESSED, now, ""
        failed = [row for row in rows if row.pk in errors]
        dead: list[WebhookEvent] = []
        for row in failed:
            failure = errors[row.pk]
            row.last_error = f"{type(failure).__name__}: {failure}"[:2000]
            if isinstance(failure, PERMANENT_ERRORS) or row.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
                row.status = WebhookEvent.Status.DEAD
                dead.append(row)
            else:
                row.status = WebhookEvent.Status.RETRYING
                row.next_attempt_at = now + _backoff(row.attempts)
                logger.info("webhook event %s retry %s in %s", row.pk, row.attempts, row.next_attempt_at - now)
        values_update(WebhookEvent, processed + failed, ["status", "processed_at", "last_error", "next_attempt_at"])
        _events_received_record(integration, rows)
        for row in dead:
            alert_create(
                title=f"Webhook event dead-lettered ({integration.name})",
                message=(
                    f"{row.provider} event {row.event_id} ({row.event_type or 'untyped'}) failed after "
                    f"{row.attempts} attempt(s): {row.last_error[:500]}. Replay it from the admin once fixed."
                ),
                severity="high",
                source=Alert.Source.WEBHOOK_DEAD_LETTER,
                grouping_key=f"integration:{integration.pk}",
            )
    return len(processed)


def _events_received_record(integration: Integration, rows: list[WebhookEvent]) -> None:
    """Note when the newest of these stored (so signature-checked) deliveries arrived; for a
    provider that only pushes (no API to test or pull), that is what makes it connected.

    Recorded by the drain, one UPDATE a batch, not by the receiver, whose answer waits on one
    statement per flush. An event replayed or retried later never moves the time back.
    """
    if not rows:
        return
    newest = Value(max(row.received_at for row in rows))
    changes: dict[str, Any] = {"last_event_at": Greatest(Coalesce("last_event_at", newest), newest)}
    if receives_pushes_only(integration):
        changes["status"] = Integration.Status.CONNECTED
    Integration.objects.filter(pk=integration.pk).update(**changes)


def _schedule_retry(integration_id: int) -> None:
    """Wake the drain when the earliest retry falls due (the sweeper would too, a little later)."""
    due = (
        WebhookEvent.objects.filter(integration_id=integration_id, status=WebhookEvent.Status.RETRYING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if due is None:
        return
    delay = max((due - timezone.now()).total_seconds(), 0)
    if delay > settings.WEBHOOK_RETRY_MAX_SECONDS or settings.CELERY_TASK_ALWAYS_EAGER:
        return
    # One wake-up per integration per due time, however many drains ran meanwhile.
    if cache.add(f"integrations:retry:{integration_id}:{int(due.timestamp())}", 1, timeout=int(delay) + 2):
        enqueue(DRAIN_TASK, integration_id, countdown=delay + 0.05)  # else the sweeper wakes it


def webhooks_sweep() -> list[int]:
    """The outbox sweeper (beat): enqueue a drain for every integration with events overdue.

    Covers enqueues lost between commit and broker, crashed workers' expired leases and retries.
    """
    overdue = timezone.now() - dt.timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS)
    integration_ids = sorted(
        set(
            WebhookEvent.objects.filter(status__in=PENDING, next_attempt_at__lte=overdue).values_list(
                "integration_id", flat=True
            )
        )
    )
    for integration_id in integration_ids:
        task_named(DRAIN_TASK).delay(integration_id)
    return integration_ids


@transaction.atomic
def webhook_events_replay(*, event_ids: list[int]) -> int:
    """Send dead-lettered events through processing again (admin action); returns how many."""
    now = timezone.now()
    rows = WebhookEvent.objects.select_for_update().filter(pk__in=event_ids, status=WebhookEvent.Status.DEAD)
    integration_ids = set(rows.values_list("integration_id", flat=True))
    count = rows.update(status=WebhookEvent.Status.RECEIVED, attempts=0, next_attempt_at=now, last_error="")
    for integration_id in integration_ids:
        enqueue_on_commit(DRAIN_TASK, integration_id)  # a lost enqueue: the sweeper drains them
    return count


def webhook_events_purge() -> int:
    """Delete processed events past retention (never under 7 days: the dedupe window)."""
    days = max(settings.WEBHOOK_RETENTION_DAYS, 7)
    cutoff = timezone.now() - dt.timedelta(days=days)
    deleted, _ = WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED, received_at__lt=cutoff).delete()
    return deleted


# --- Pull sync --------------------------------------------------------------------------------------


def sync_start(*, integration_id: Any, trigger: str = SyncRun.Trigger.SCHEDULE) -> SyncRun:
    """Open a sync run, unless one is already running (409); the caller then runs `sync_execute`."""
    try:
        pk = int(integration_id)
    except (TypeError, ValueError):
        raise NotFoundError("Integration not found") from None
    with transaction.atomic():
        integration = Integration.objects.select_for_update(no_key=True).filter(pk=pk).first()
        if integration is None:
            raise NotFoundError("Integration not found")
        try:
            connector = connector_for(integration)
        except NotSupported as error:
            raise ConflictError(str(error)) from None
        if not connector.can_pull:
            raise ConflictError(f"{integration.provider} has no pull sync (it pushes webhooks).")
        # A run without credentials would only fail at the provider; say what is missing instead.
        missing = connector.missing_credentials()
        if missing:
            raise ConflictError(
                f"{integration.name} is not connected: no {', '.join(missing)} configured. "
                "Add it in the integration's settings."
            )
        stale = timezone.now() - dt.timedelta(seconds=settings.INTEGRATION_SYNC_LEASE_SECONDS)
        running = integration.sync_runs.filter(status=SyncRun.Status.RUNNING)
        running.filter(started_at__lt=stale).update(
            status=SyncRun.Status.FAILED, finished_at=timezone.now(), error="Abandoned (worker lost)."
        )
        if running.exists():
            raise ConflictError("A sync of this integration is already running.")
        integration.status = Integration.Status.SYNCING
        integration.save(update_fields=["status"])
        return SyncRun.objects.create(integration=integration, trigger=trigger, started_at=timezone.now())


def sync_execute(*, run_id: int) -> SyncRun:
    """Pull every page since the cursor, apply each page, keep the cursor and the run's counts."""
    run = SyncRun.objects.select_related("integration").get(pk=run_id)
    integration = run.integration
    try:
        connector = connector_for(integration)
        for page in connector.pull(dict(integration.cursor or {})):
            run.fetched += page.fetched
            created, updated, failed, error = _apply_page(integration.pk, page.events)
            run.created, run.updated, run.failed = run.created + created, run.updated + updated, run.failed + failed
            run.error = run.error or error
            if page.cursor:
                integration.cursor = page.cursor
                Integration.objects.filter(pk=integration.pk).update(cursor=page.cursor)
            SyncRun.objects.filter(pk=run.pk).update(
                fetched=run.fetched, created=run.created, updated=run.updated, failed=run.failed
            )
    except Exception as error:
        return _sync_finish(run, error=f"{type(error).__name__}: {error}")
    return _sync_finish(run, error=None)


def _apply_page(integration_id: int, events: list[CanonicalEvent]) -> tuple[int, int, int, str]:
    """A page in one transaction; if it fails, event by event, so one bad record costs only itself."""
    if not events:
        return 0, 0, 0, ""
    try:
        result = apply_events(integration_id=integration_id, events=events)
        return result.created, result.updated, 0, ""
    except (IntegrityError, ValueError, LookupError) as batch_error:
        logger.info("page of integration %s failed as a batch (%s); applying one by one", integration_id, batch_error)
    created = updated = failed = 0
    first_error = ""
    for event in events:
        try:
            result = apply_events(integration_id=integration_id, events=[event])
            created, updated = created + result.created, updated + result.updated
        except (IntegrityError, ValueError, LookupError) as error:
            failed += 1
            first_error = first_error or f"{type(error).__name__}: {error}"
    return created, updated, failed, first_error


def _sync_finish(run: SyncRun, *, error: str | None) -> SyncRun:
    now = timezone.now()
    with transaction.atomic():
        integration = Integration.objects.select_for_update(no_key=True).get(pk=run.integration_id)
        run.finished_at = now
        if error is None:
            run.status = SyncRun.Status.SUCCEEDED
            integration.status = Integration.Status.CONNECTED
            integration.last_sync_at = now
            integration.consecutive_failures = 0
        else:
            run.status, run.error = SyncRun.Status.FAILED, error[:2000]
            integration.status = Integration.Status.ERROR
            integration.last_error, integration.last_error_at = error[:2000], now
            integration.consecutive_failures += 1
            alert_create(
                title=f"Sync failed: {integration.name}",
                message=(
                    f"The {integration.provider} sync failed ({run.fetched} fetched before it stopped): {error[:500]}"
                ),
                severity="high" if integration.consecutive_failures >= 3 else "medium",
                source=Alert.Source.SYNC_FAILED,
                grouping_key=f"integration:{integration.pk}",
            )
        run.save(update_fields=["finished_at", "status", "error"])
        integration.save(
            update_fields=["status", "last_sync_at", "consecutive_failures", "last_error", "last_error_at"]
        )
    return run


def sync_now(*, integration_id: Any) -> SyncRun:
    """Manual "sync now" (API and admin): open the run here, so a conflict is answered at once."""
    run = sync_start(integration_id=integration_id, trigger=SyncRun.Trigger.MANUAL)
    # A lost enqueue leaves the run `running` until its lease ends; the next sync marks it abandoned.
    enqueue_on_commit("integrations.tasks.run_sync", run.pk)
    return run


# --- Schedules --------------------------------------------------------------------------------------


def integration_schedule_sync(*, integration: Integration) -> PeriodicTask | None:
    """Install (or disable) this integration's pull schedule in django-celery-beat."""
    name = f"{SCHEDULE_PREFIX}{integration.pk}"
    try:
        can_pull = connector_for(integration).can_pull
    except NotSupported:
        can_pull = False
    minutes = int((integration.config or {}).get("sync_interval_minutes") or settings.INTEGRATION_SYNC_MINUTES)
    enabled = can_pull and integration.status != Integration.Status.DISCONNECTED
    if not can_pull:
        PeriodicTask.objects.filter(name=name).update(enabled=False)
        return None
    interval, _ = IntervalSchedule.objects.get_or_create(every=max(minutes, 1), period=IntervalSchedule.MINUTES)
    task, _ = PeriodicTask.objects.update_or_create(
        name=name,
        defaults={
            "task": "integrations.tasks.sync_integration",
            "interval": interval,
            "crontab": None,
            "args": json.dumps([integration.pk]),
            "enabled": enabled,
        },
    )
    return task


def integration_schedules_sync() -> int:
    """Every integration's schedule (run by `manage.py sync_schedules`); removed ones are deleted."""
    integrations = list(Integration.objects.all())
    for integration in integrations:
        integration_schedule_sync(integration=integration)
    PeriodicTask.objects.filter(name__startswith=SCHEDULE_PREFIX).exclude(
        name__in=[f"{SCHEDULE_PREFIX}{i.pk}" for i in integrations]
    ).delete()
    return len(integrations)


__all__ = ["SignatureError"]
