"""Reads about alerts: a CSM sees alerts on their own customers; managers, admins and viewers see all."""

from typing import Any

from django.db.models import QuerySet

from alerts.models import Alert
from churnshield.auth.roles import sees_all_customers


def alert_scope(*, user: Any) -> QuerySet[Alert]:
    if sees_all_customers(user):
        return Alert.objects.all()
    return Alert.objects.filter(customer__owner_id=user.pk)


def alert_events(customer_id: int, cursor: Any, limit: int) -> list[dict]:
    from customers.timeline import before_cursor

    rows = (
        Alert.objects.filter(customer_id=customer_id)
        .filter(before_cursor("created_at", "alert", cursor))
        .order_by("-created_at", "-id")[:limit]
    )
    return [
        {
            "type": "alert",
            "at": row.created_at,
            "title": row.title,
            "detail": f"{row.severity}: {row.message}",
            "ref": {"kind": "alert", "id": row.pk},
        }
        for row in rows
    ]
