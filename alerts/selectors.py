"""Reads about alerts: a CSM sees alerts on their own customers; managers, admins and viewers see all."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from alerts.models import Alert, NotificationPreference, NotificationSettings
from core.auth.roles import sees_all_customers
from customers.timeline import events_after


def alert_scope(*, user: Any) -> QuerySet[Alert]:
    if sees_all_customers(user):
        return Alert.objects.all()
    return Alert.objects.filter(customer__owner_id=user.pk)


BELL_LIMIT = 10


def alert_bell_unread(*, user: Any) -> QuerySet[Alert]:
    """What the admin's bell counts and lists: open alerts in the user's scope that nobody has read
    (a snooze that ran out counts as open before the beat sweep re-opens it)."""
    still_open = Q(status=Alert.Status.OPEN) | Q(status=Alert.Status.SNOOZED, snoozed_until__lte=timezone.now())
    return alert_scope(user=user).filter(still_open, read=False)


@dataclass(frozen=True)
class AlertBell:
    """What the admin's bell shows: how many alerts are unread, and the newest of them."""

    count: int
    alerts: list[Alert]  # the newest BELL_LIMIT, their customers loaded


def alert_bell(*, user: Any) -> AlertBell:
    """The bell's count and its newest BELL_LIMIT alerts, in two queries."""
    unread = alert_bell_unread(user=user)
    rows = unread.select_related("customer").order_by("-created_at", "-id")[:BELL_LIMIT]
    return AlertBell(count=unread.count(), alerts=list(rows))


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


def notification_settings_get() -> NotificationSettings:
    """The noise-control settings row, or its defaults when nobody saved it yet (never writes)."""
    return NotificationSettings.objects.filter(pk=1).first() or NotificationSettings(pk=1)


def preferences_for(*, user_ids: Iterable[int]) -> dict[int, NotificationPreference]:
    """Each user's preferences in one query; users without a row get the defaults (unsaved)."""
    ids = list(user_ids)
    found = {pref.user_id: pref for pref in NotificationPreference.objects.filter(user_id__in=ids)}
    return {uid: found.get(uid) or NotificationPreference(user_id=uid) for uid in ids}


def preference_of(*, user: Any) -> NotificationPreference:
    pref = NotificationPreference.objects.filter(user=user).first() or NotificationPreference(user=user)
    pref.user = user  # the signed-in user object, so rendering its email costs no query
    return pref
