"""Writes to alerts. `alert_create` is the one way to raise an alert.

Raising an alert writes the row (with its owner — the customer's CSM — its source and grouping
key) and, after the transaction commits, enqueues ONE fan-out task for everything raised in it
(`alerts.tasks.fan_out_alerts`), which routes, groups and sends the notifications. An open alert
is written owing its fan-out (`fan_out_pending`); if the enqueue never reaches the broker, the
beat sweep (`dispatch_notifications`) fans it out once the broker is back.

Sources (`Alert.Source`, pass the value as `source=`): `risk_rise` and `health_drop` (the
scoring path), `payment_failed`, `sync_failed`, `playbook_step_failed`, `webhook_dead_letter`,
`other` (default). The grouping key defaults to `customer:<id>`, or the source for alerts without
a customer (pass e.g. `integration:<id>` to group differently).
"""

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import IntegerField, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from alerts.models import SEVERITY_RANK, Alert, NotificationPreference
from alerts.realtime import broadcast_alerts
from alerts.selectors import alert_scope
from core.db import delete_in_batches
from core.enqueue import enqueue
from core.exceptions import ConflictError, InvalidInputError, NotFoundError
from customers.models import Customer
from customers.selectors import risk_thresholds

log = logging.getLogger(__name__)

MAX_SNOOZE = dt.timedelta(days=30)


def default_grouping_key(*, customer_id: int | None, source: str) -> str:
    return f"customer:{customer_id}" if customer_id is not None else source


def alert_create(
    *,
    title: str,
    message: str,
    severity: str = Alert.Severity.MEDIUM,
    customer_id: int | None = None,
    source: str = Alert.Source.OTHER,
    grouping_key: str | None = None,
    owner_id: int | None = None,
    context: dict[str, Any] | None = None,
) -> Alert:
    """Raise one alert. `owner_id` defaults to the customer's owner; notifications follow after commit."""
    alerts = _prepare(
        [
            {
                "title": title,
                "message": message,
                "severity": severity,
                "customer_id": customer_id,
                "source": source,
                "grouping_key": grouping_key,
                "owner_id": owner_id,
                "context": context,
            }
        ]
    )
    with transaction.atomic():
        _apply_snoozes(alerts)
        _mark_owed(alerts)
        alerts[0].save()
        _publish_after_commit([alerts[0]])
    return alerts[0]


def alerts_create_many(*, alerts: list[dict[str, Any]]) -> int:
    """Raise many alerts in one write (the scoring batch); each dict has alert_create's fields.

    One bulk insert and one fan-out task for the whole batch, however many alerts it holds.
    """
    rows = _prepare(alerts)
    with transaction.atomic():
        _apply_snoozes(rows)
        _mark_owed(rows)
        created = Alert.objects.bulk_create(rows, batch_size=1000)
        _publish_after_commit(created)
    return len(rows)


def _prepare(specs: list[dict[str, Any]]) -> list[Alert]:
    missing = {s["customer_id"] for s in specs if s.get("customer_id") is not None and s.get("owner_id") is None}
    owners = dict(Customer.objects.filter(pk__in=missing).values_list("pk", "owner_id")) if missing else {}
    rows = []
    for spec in specs:
        customer_id = spec.get("customer_id")
        source = spec.get("source") or Alert.Source.OTHER
        rows.append(
            Alert(
                title=spec["title"],
                message=spec["message"],
                severity=spec.get("severity") or Alert.Severity.MEDIUM,
                customer_id=customer_id,
                source=source,
                grouping_key=spec.get("grouping_key") or default_grouping_key(customer_id=customer_id, source=source),
                owner_id=spec["owner_id"] if spec.get("owner_id") is not None else owners.get(customer_id or 0),
                context=spec.get("context") or {},
            )
        )
    return rows


def _apply_snoozes(new: list[Alert]) -> None:
    """A snoozed group stays quiet unless the customer gets worse.

    A new alert no more severe than a snoozed alert of its group is created snoozed too (until the
    same time); a more severe one re-opens the group's snoozed alerts and is notified.
    """
    keys = {alert.grouping_key for alert in new}
    snoozed: dict[str, list[tuple[int, str, dt.datetime]]] = {}
    for pk, key, severity, until in Alert.objects.filter(
        grouping_key__in=keys, status=Alert.Status.SNOOZED, snoozed_until__gt=timezone.now()
    ).values_list("pk", "grouping_key", "severity", "snoozed_until"):
        if until is not None:  # filtered on snoozed_until > now: always set
            snoozed.setdefault(key, []).append((pk, severity, until))
    reopen: set[int] = set()
    for alert in new:
        group = snoozed.get(alert.grouping_key)
        if not group:
            continue
        worst = max(SEVERITY_RANK[severity] for _, severity, _ in group)
        if SEVERITY_RANK[alert.severity] > worst:
            reopen |= {pk for pk, _, _ in group}
        else:
            alert.status, alert.snoozed_until = Alert.Status.SNOOZED, max(until for _, _, until in group)
    if reopen:
        Alert.objects.filter(pk__in=reopen).update(status=Alert.Status.OPEN, snoozed_until=None)


def _mark_owed(alerts: list[Alert]) -> None:
    """Open alerts owe a fan-out; one created snoozed does not (it is notified, if still open, when
    the snooze runs out), so the sweep keeps a snoozed group as quiet as the first fan-out does."""
    for alert in alerts:
        alert.fan_out_pending = alert.status == Alert.Status.OPEN


def _publish(alert_ids: list[int], notify_ids: list[int]) -> None:
    if alert_ids:
        try:
            broadcast_alerts(alert_ids)
        except Exception:  # a feed hiccup must not cost the notifications; clients resume by id
            log.exception("live alert broadcast failed for %d alerts", len(alert_ids))
    if notify_ids:
        # A broker outage is logged, not raised: the alerts stay owed and the sweep fans them out.
        enqueue("alerts.tasks.fan_out_alerts", notify_ids)  # by name: the tasks import the services


def _publish_after_commit(alerts: list[Alert]) -> None:
    """Once the rows are committed: push every new alert to the live feed (ws/alerts), then
    enqueue one notification fan-out for the open ones (a snoozed group stays quiet)."""
    alert_ids = [alert.pk for alert in alerts]
    notify_ids = [alert.pk for alert in alerts if alert.status == Alert.Status.OPEN]

    def publish() -> None:
        pending = getattr(_batched, "pending", None)
        if pending is not None:  # inside alerts_publish_batched(): published once, when it ends
            pending[0].extend(alert_ids)
            pending[1].extend(notify_ids)
            return
        _publish(alert_ids, notify_ids)

    if alert_ids:
        transaction.on_commit(publish)


_batched = threading.local()


@contextmanager
def alerts_publish_batched() -> Iterator[None]:
    """Alerts committed by the transactions inside this block are pushed and fanned out once, when
    it ends (one broadcast and one fan-out task instead of one per transaction). For workers that
    run many short transactions in a row (the playbook engine's chunk of executions)."""
    if getattr(_batched, "pending", None) is not None:
        yield
        return
    _batched.pending = ([], [])
    try:
        yield
    finally:
        alert_ids, notify_ids = _batched.pending
        _batched.pending = None
        _publish(alert_ids, notify_ids)


def alert_set_read(*, user: Any, alert_ids: list[int], read: bool = True) -> int:
    """Mark the user's alerts among `alert_ids` read (or unread); ids outside their scope are ignored."""
    return alert_scope(user=user).filter(pk__in=alert_ids).update(read=read)


def _alert_id(alert_id: Any) -> int:
    try:
        return int(alert_id)
    except (TypeError, ValueError):
        raise NotFoundError("Alert not found") from None


@transaction.atomic
def alert_mark_read(*, user: Any, alert_id: Any) -> Alert:
    alert_id = _alert_id(alert_id)
    if not alert_set_read(user=user, alert_ids=[alert_id]):
        raise NotFoundError("Alert not found")
    return Alert.objects.get(pk=alert_id)


def _locked(user: Any, alert_id: Any) -> Alert:
    alert = alert_scope(user=user).select_for_update().filter(pk=_alert_id(alert_id)).first()
    if alert is None:
        raise NotFoundError("Alert not found")
    if alert.status == Alert.Status.RESOLVED:
        raise ConflictError("This alert is resolved.")
    return alert


@transaction.atomic
def alert_acknowledge(*, user: Any, alert_id: Any, now: dt.datetime | None = None) -> Alert:
    """Someone is on it: pending notifications leave it out, and it is read (whoever acknowledges
    has seen it). Acknowledging twice keeps the first acknowledgement."""
    alert = _locked(user, alert_id)
    if alert.status != Alert.Status.ACKNOWLEDGED:
        alert.status, alert.snoozed_until, alert.read = Alert.Status.ACKNOWLEDGED, None, True
        alert.acknowledged_at, alert.acknowledged_by = now or timezone.now(), user
        alert.save(update_fields=["status", "snoozed_until", "read", "acknowledged_at", "acknowledged_by"])
    elif not alert.read:
        alert.read = True
        alert.save(update_fields=["read"])
    return alert


@transaction.atomic
def alert_snooze(*, user: Any, alert_id: Any, until: dt.datetime, now: dt.datetime | None = None) -> Alert:
    """Silence the alert (and its group's equal or lesser news) until `until`; worse news re-opens it."""
    now = now or timezone.now()
    if until <= now or until > now + MAX_SNOOZE:
        raise InvalidInputError({"until": ["Snooze until a time in the next 30 days."]})
    alert = _locked(user, alert_id)
    alert.status, alert.snoozed_until = Alert.Status.SNOOZED, until
    alert.save(update_fields=["status", "snoozed_until"])
    return alert


# The snooze choices the admin offers (the bell and the alert page), besides a chosen time.
SNOOZE_PRESETS = {"1h": "1 hour", "4h": "4 hours", "tomorrow": "Tomorrow 9:00", "1w": "1 week"}


def snooze_preset_until(preset: str, *, now: dt.datetime, time_zone: str) -> dt.datetime:
    """When a snooze preset ends; "tomorrow" is 9:00 on the next day in the user's time zone."""
    if preset == "1h":
        return now + dt.timedelta(hours=1)
    if preset == "4h":
        return now + dt.timedelta(hours=4)
    if preset == "1w":
        return now + dt.timedelta(weeks=1)
    if preset == "tomorrow":
        zone = ZoneInfo(time_zone)
        return dt.datetime.combine(now.astimezone(zone).date() + dt.timedelta(days=1), dt.time(9), tzinfo=zone)
    raise InvalidInputError({"preset": [f"Choose one of {', '.join(SNOOZE_PRESETS)}."]})


def alerts_resolve_cleared(*, customer_ids: list[int] | None = None, now: dt.datetime | None = None) -> int:
    """Auto-resolve alerts whose condition cleared, in one UPDATE (the scoring write-back calls it).

    - risk rise to `high` resolves once the customer's risk is below the high threshold; a rise to
      `medium` once it is below the medium threshold;
    - a health drop resolves once the health score is back at its level before the drop.
    """
    medium, high = risk_thresholds()
    cleared = (
        Q(source=Alert.Source.RISK_RISE, context__level="high", customer__churn_risk__lt=high)
        | Q(source=Alert.Source.RISK_RISE, context__level="medium", customer__churn_risk__lt=medium)
        | Q(
            source=Alert.Source.HEALTH_DROP,
            customer__health_score__gte=Cast(KT("context__health_before"), IntegerField()),
        )
    )
    open_alerts = Alert.objects.filter(
        resolved_at__isnull=True, source__in=[Alert.Source.RISK_RISE, Alert.Source.HEALTH_DROP]
    )
    if customer_ids is not None:
        open_alerts = open_alerts.filter(customer_id__in=customer_ids)
    return open_alerts.filter(cleared).update(status=Alert.Status.RESOLVED, resolved_at=now or timezone.now())


@transaction.atomic
def notification_preference_set(*, user: Any, data: dict[str, Any]) -> NotificationPreference:
    """Create or replace the user's preferences with validated `data` (model field names)."""
    pref, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
    for field, value in data.items():
        setattr(pref, field, value)
    pref.save()
    return pref


def alerts_purge_read(cutoff: dt.datetime) -> int:
    """Retention job: read alerts older than the cutoff are gone; unread ones stay whatever their age."""
    return delete_in_batches(Alert.objects.filter(read=True, created_at__lt=cutoff).order_by())
