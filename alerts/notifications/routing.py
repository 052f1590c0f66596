"""Who is notified about an alert: its owner (the customer's CSM); managers too when it is critical;
managers and admins when it has no owner (no customer, or an unassigned customer)."""

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db.models import Q

from alerts.models import Alert
from core.auth.roles import Role


def escalation_users() -> tuple[set[int], set[int]]:
    """Ids of active managers and of active admins (superusers count as admins), in one query."""
    managers: set[int] = set()
    admins: set[int] = set()
    rows = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=[Role.MANAGER, Role.ADMIN]) | Q(is_superuser=True))
        .values_list("pk", "groups__name", "is_superuser")
    )
    for pk, group, is_superuser in rows:
        if is_superuser or group == Role.ADMIN:
            admins.add(pk)
        elif group == Role.MANAGER:
            managers.add(pk)
    return managers, admins - managers


def recipients(alerts: Iterable[Alert]) -> dict[int, list[int]]:
    """Alert id → recipient user ids (ordered, without duplicates). An owner who left is skipped."""
    alerts = list(alerts)
    managers, admins = escalation_users()
    owner_ids = {alert.owner_id for alert in alerts if alert.owner_id is not None}
    active = set(get_user_model().objects.filter(pk__in=owner_ids, is_active=True).values_list("pk", flat=True))
    routed: dict[int, list[int]] = {}
    for alert in alerts:
        if alert.owner_id not in active:
            ids = sorted(managers | admins)
        else:
            ids = [alert.owner_id]
            if alert.severity == Alert.Severity.CRITICAL:
                ids += sorted(managers - {alert.owner_id})
        routed[alert.pk] = ids
    return routed
