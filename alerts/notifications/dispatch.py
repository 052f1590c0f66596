"""Sending: claim due deliveries (throttling them per channel), send one, record the outcome.

A delivery moves pending → sending → sent | failed | skipped, or → retrying (transient error,
attempts left) → sending … Retries back off exponentially with full jitter (Celery's
`get_exponential_backoff_interval`, the function behind `retry_backoff`/`retry_jitter`).
"""

import datetime as dt
from dataclasses import dataclass

from celery.utils.time import get_exponential_backoff_interval
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from alerts import selectors
from alerts.models import Alert, NotificationDelivery
from alerts.notifications import channels
from alerts.notifications.errors import DeliveryError, TransientDeliveryError

Status = NotificationDelivery.Status
Channel = NotificationDelivery.Channel
CLAIM_LIMIT = 500
STALE_AFTER = dt.timedelta(minutes=15)


def snoozes_expire(*, now: dt.datetime | None = None) -> list[int]:
    """Re-open alerts whose snooze ran out; return their ids (they are notified again)."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            Alert.objects.select_for_update()
            .filter(status=Alert.Status.SNOOZED, snoozed_until__lte=now)
            .values_list("pk", flat=True)
        )
        Alert.objects.filter(pk__in=expired).update(status=Alert.Status.OPEN, snoozed_until=None)
    return expired


@transaction.atomic
def deliveries_claim_due(*, now: dt.datetime | None = None, limit: int = CLAIM_LIMIT) -> list[int]:
    """Mark due pending deliveries `sending` and return their ids; throttled ones are pushed back.

    Throttle: at most `throttle_limit` sent per recipient and channel within the throttle window.
    A throttled delivery stays pending (new alerts of its group still join it) until the oldest
    send in the window ages out; it is delayed, never dropped. Digests and deliveries carrying a
    critical alert are not throttled. Rows are locked with SKIP LOCKED so sweepers never collide.
    """
    now = now or timezone.now()
    config = selectors.notification_settings_get()
    due = list(
        NotificationDelivery.objects.select_for_update(skip_locked=True)
        .filter(status=Status.PENDING, due_at__lte=now)
        .order_by("due_at", "pk")[:limit]
    )
    if not due:
        return []
    window_start = now - dt.timedelta(minutes=config.throttle_window_minutes)
    recent = {
        (row["recipient_id"], row["channel"]): (row["n"], row["oldest"])
        for row in NotificationDelivery.objects.filter(
            recipient_id__in={d.recipient_id for d in due}, sent_at__gt=window_start
        )
        .exclude(channel=Channel.DIGEST)
        .values("recipient_id", "channel")
        .annotate(n=Count("pk"), oldest=Min("sent_at"))
    }
    critical = set(
        NotificationDelivery.alerts.through.objects.filter(
            notificationdelivery_id__in=[d.pk for d in due], alert__severity=Alert.Severity.CRITICAL
        ).values_list("notificationdelivery_id", flat=True)
    )
    claimed, deferred = [], []
    for delivery in due:
        key = (delivery.recipient_id, delivery.channel)
        sent, oldest = recent.get(key, (0, None))
        if delivery.channel != Channel.DIGEST and delivery.pk not in critical and sent >= config.throttle_limit:
            delivery.due_at = oldest + dt.timedelta(minutes=config.throttle_window_minutes)
            delivery.last_error = f"throttled: {sent} sent in the last {config.throttle_window_minutes} min"
            deferred.append(delivery)
            continue
        recent[key] = (sent + 1, oldest or now)
        claimed.append(delivery.pk)
    if deferred:
        NotificationDelivery.objects.bulk_update(deferred, ["due_at", "last_error", "updated_at"])
    NotificationDelivery.objects.filter(pk__in=claimed).update(status=Status.SENDING, updated_at=now)
    return claimed


def deliveries_stale(*, now: dt.datetime | None = None, grace: dt.timedelta = STALE_AFTER) -> list[int]:
    """Deliveries whose send task was lost (a worker died before sending, a retry message vanished).

    A send takes at most the task's time limit (2 min), so a row still `sending` long after its
    claim, or `retrying` long after its retry was due, has no task left; it is sent again.
    """
    now = now or timezone.now()
    stale = Q(status=Status.SENDING, updated_at__lt=now - grace) | Q(status=Status.RETRYING, due_at__lt=now - grace)
    return list(NotificationDelivery.objects.filter(stale).order_by("pk").values_list("pk", flat=True)[:CLAIM_LIMIT])


@dataclass(frozen=True)
class SendOutcome:
    status: str
    retry_in: float | None = None


def delivery_send(*, delivery_id: int, now: dt.datetime | None = None) -> SendOutcome:
    """Send one claimed delivery and record the outcome on its row.

    Idempotent: a delivery that is not `sending`/`retrying` (already sent, failed, skipped or
    unknown) is left alone. Alerts acknowledged, snoozed or resolved since they were raised are
    left out; when none is left the delivery is skipped.
    """
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            NotificationDelivery.objects.select_for_update()
            .select_related("recipient")
            .filter(pk=delivery_id, status__in=[Status.SENDING, Status.RETRYING])
            .first()
        )
        if delivery is None:
            return SendOutcome("noop")
        delivery.status = Status.SENDING
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.save(update_fields=["status", "attempts", "last_attempt_at", "updated_at"])
    alerts = list(
        delivery.alerts.filter(status=Alert.Status.OPEN).select_related("customer").order_by("-created_at", "-id")
    )
    if not alerts:
        return _finish(delivery, Status.SKIPPED, "every alert was acknowledged, snoozed or resolved", now)
    try:
        _send(delivery, alerts)
    except TransientDeliveryError as exc:
        config = selectors.notification_settings_get()
        if delivery.attempts >= config.max_attempts:
            return _finish(delivery, Status.FAILED, f"gave up after {delivery.attempts} attempts: {exc}", now)
        delay = get_exponential_backoff_interval(
            factor=config.retry_backoff_seconds,
            retries=delivery.attempts - 1,
            maximum=config.retry_backoff_max_seconds,
            full_jitter=True,
        )
        delay = max(delay, min(exc.retry_after or 0, config.retry_backoff_max_seconds))
        delivery.status, delivery.last_error = Status.RETRYING, str(exc)[:2000]
        delivery.due_at = now + dt.timedelta(seconds=delay)
        delivery.save(update_fields=["status", "last_error", "due_at", "updated_at"])
        return SendOutcome(Status.RETRYING, retry_in=delay)
    except DeliveryError as exc:
        return _finish(delivery, Status.FAILED, str(exc), now)
    return _finish(delivery, Status.SENT, "", now)


def _finish(delivery: NotificationDelivery, status: str, error: str, now: dt.datetime) -> SendOutcome:
    delivery.status, delivery.last_error = status, error[:2000]
    delivery.sent_at = now if status == Status.SENT else None
    delivery.save(update_fields=["status", "last_error", "sent_at", "updated_at"])
    return SendOutcome(status)


def _send(delivery: NotificationDelivery, alerts: list[Alert]) -> None:
    user = delivery.recipient
    if delivery.channel == Channel.EMAIL:
        channels.email_alerts(to=user.email, alerts=alerts)
    elif delivery.channel == Channel.DIGEST:
        channels.email_digest(to=user.email, alerts=alerts)
    else:
        pref = selectors.preferences_for(user_ids=[user.pk])[user.pk]
        url = pref.slack_webhook_url if delivery.channel == Channel.SLACK else pref.teams_webhook_url
        if not url:
            raise DeliveryError(f"The recipient removed their {delivery.channel} webhook.")
        send = channels.slack_send if delivery.channel == Channel.SLACK else channels.teams_send
        send(url=url, alerts=alerts)
