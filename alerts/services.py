"""Writes to alerts. `alert_create` is the one way to raise an alert (fan-out lands with issue 5)."""

from typing import Any

from django.db import transaction

from alerts.models import Alert
from alerts.realtime import broadcast_alerts
from alerts.selectors import alert_scope
from churnshield.exceptions import NotFoundError


def alert_create(
    *, title: str, message: str, severity: str = Alert.Severity.MEDIUM, customer_id: int | None = None
) -> Alert:
    alert = Alert.objects.create(title=title, message=message, severity=severity, customer_id=customer_id)
    transaction.on_commit(lambda: broadcast_alerts([alert.pk]), robust=True)  # live feed (ws/alerts)
    return alert


def alerts_create_many(*, alerts: list[dict[str, Any]]) -> int:
    """Raise many alerts in one write (the scoring batch); each dict has alert_create's fields."""
    created = Alert.objects.bulk_create(
        [
            Alert(
                title=a["title"],
                message=a["message"],
                severity=a.get("severity", Alert.Severity.MEDIUM),
                customer_id=a.get("customer_id"),
            )
            for a in alerts
        ],
        batch_size=1000,
    )
    transaction.on_commit(lambda: broadcast_alerts([a.pk for a in created]), robust=True)  # live feed (ws/alerts)
    return len(alerts)


def alert_set_read(*, user: Any, alert_ids: list[int], read: bool = True) -> int:
    """Mark the user's alerts among `alert_ids` read (or unread); ids outside their scope are ignored."""
    return alert_scope(user=user).filter(pk__in=alert_ids).update(read=read)


@transaction.atomic
def alert_mark_read(*, user: Any, alert_id: Any) -> Alert:
    try:
        alert_id = int(alert_id)
    except (TypeError, ValueError):
        raise NotFoundError("Alert not found") from None
    if not alert_set_read(user=user, alert_ids=[alert_id]):
        raise NotFoundError("Alert not found")
    return Alert.objects.get(pk=alert_id)
