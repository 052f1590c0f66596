"""Reads about alerts: a CSM sees alerts on their own customers; managers, admins and viewers see all."""

from typing import Any

from django.db.models import QuerySet

from alerts.models import Alert
from churnshield.auth.roles import sees_all_customers
from customers.timeline import events_after


def alert_scope(*, user: Any) -> QuerySet[Alert]:
    if sees_all_customers(user):
        return Alert.objects.all()
    return Alert.objects.filter(customer__owner_id=user.pk)


def alert_events(customer_id: int, cursor: Any, limit: int) -> list[dict]:
    return events_after(
        Alert.objects.filter(customer_id=customer_id),
        event_type="alert",
        field="created_at",
        cursor=cursor,
        limit=limit,
        render=lambda row: {
            "title": row.title,
            "detail": f"{row.severity}: {row.message}",
            "ref": {"kind": "alert", "id": row.pk},
        },
    )
