"""Fan-out: for new alerts, decide recipients and channels and write `notification_deliveries`.

Noise control, with Prometheus Alertmanager's grouping semantics:
- a notification is per (recipient, channel, grouping key). The first alert of a group opens a
  *pending* delivery due after `group_wait`; alerts of the same group arriving meanwhile join it,
  so they go out as ONE notification;
- once a group was notified, its next alerts wait until `group_interval` after that send;
- quiet hours (user's zone) push the due time to their end; digest users get non-critical
  alerts in one daily delivery (channel `digest`) due at the digest hour. Critical alerts are
  never held by the group interval, quiet hours or the digest, and pull a waiting delivery
  forward to `group_wait`.
Per-channel throttling is applied when a delivery falls due (`dispatch.py`).
"""

import datetime as dt
from collections.abc import Collection, Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from alerts import selectors
from alerts.models import SEVERITY_RANK, Alert, NotificationDelivery, NotificationPreference, NotificationSettings
from alerts.notifications import routing, timing

Channel = NotificationDelivery.Channel
DIGEST_KEY = "digest"


def channels_for(
    pref: NotificationPreference, email: str, severity: str, only: Collection[str] | None = None
) -> list[str]:
    """The channels one alert of `severity` goes to for a user with these preferences. `only`
    (an alert's `context["channels"]`, e.g. from a playbook's notify step) keeps those of the
    user's channels and skips the digest: the sender asked for that channel now."""
    if SEVERITY_RANK[severity] < SEVERITY_RANK[pref.min_severity]:
        return []
    if only is None and pref.digest_enabled and severity != Alert.Severity.CRITICAL:
        return [Channel.DIGEST] if pref.email_enabled and email else []
    channels = []
    if pref.email_enabled and email:
        channels.append(Channel.EMAIL)
    if pref.slack_webhook_url:
        channels.append(Channel.SLACK)
    if pref.teams_webhook_url:
        channels.append(Channel.TEAMS)
    return channels if only is None else [channel for channel in channels if channel in only]


def _due_at(
    *,
    now: dt.datetime,
    channel: str,
    severity: str,
    pref: NotificationPreference,
    config: NotificationSettings,
    last_sent: dt.datetime | None,
) -> dt.datetime:
    if channel == Channel.DIGEST:
        return timing.next_digest_at(now, pref.time_zone, config.digest_hour)
    due = now + dt.timedelta(seconds=config.group_wait_seconds)
    if severity == Alert.Severity.CRITICAL:
        return due  # critical news waits for neither the group interval nor quiet hours
    if last_sent is not None:
        due = max(due, last_sent + dt.timedelta(minutes=config.group_interval_minutes))
    quiet_end = timing.quiet_until(due, pref.time_zone, pref.quiet_hours_start, pref.quiet_hours_end)
    return quiet_end or due


def notifications_fan_out(
    *, alert_ids: Iterable[int], now: dt.datetime | None = None, repeat: bool = False
) -> list[int]:
    """Route the alerts and write their deliveries; return the ids of deliveries due now.

    Runs once per alert: it takes the alerts still owing their fan-out (row-locked, so the
    enqueued fan-out and the sweep's cannot both run) and clears that flag in the transaction
    that writes their deliveries. `repeat` (a snooze ran out: notify again) takes open alerts
    whatever the flag. An alert already carried by a delivery to a recipient on a channel is not
    added again either. A concurrent fan-out that opened the same pending delivery first makes
    this one retry.
    """
    ids = sorted(set(alert_ids))
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _fan_out(ids, now or timezone.now(), repeat)
        except IntegrityError:
            if attempt == 2:
                raise
    return []


def alerts_owed_fan_out(*, now: dt.datetime | None = None, limit: int = 5000) -> list[int]:
    """Open alerts whose fan-out never ran (its enqueue was lost: broker down, process killed
    between commit and publish), oldest first; those raised in the last grace seconds are left to
    the fan-out their commit enqueued."""
    now = now or timezone.now()
    grace = dt.timedelta(seconds=settings.NOTIFICATIONS_FAN_OUT_GRACE_SECONDS)
    return list(
        Alert.objects.filter(fan_out_pending=True, status=Alert.Status.OPEN, created_at__lte=now - grace)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def _fan_out(alert_ids: list[int], now: dt.datetime, repeat: bool) -> list[int]:
    owed = Alert.objects.select_for_update().filter(pk__in=alert_ids, status=Alert.Status.OPEN).order_by("pk")
    if not repeat:
        owed = owed.filter(fan_out_pending=True)
    alerts = list(owed)
    if not alerts:
        return []
    Alert.objects.filter(pk__in=[alert.pk for alert in alerts], fan_out_pending=True).update(fan_out_pending=False)
    config = selectors.notification_settings_get()
    routed = routing.recipients(alerts)
    user_ids = {uid for uids in routed.values() for uid in uids}
    emails = dict(get_user_model().objects.filter(pk__in=user_ids, is_active=True).values_list("pk", "email"))
    prefs = selectors.preferences_for(user_ids=emails.keys())

    # (recipient, channel, group key) -> alerts for it, with the worst severity.
    wanted: dict[tuple[int, str, str], list[Alert]] = {}
    for alert in alerts:
        for uid in routed[alert.pk]:
            if uid not in emails:
                continue
            only = alert.context.get("channels") if isinstance(alert.context, dict) else None
            for channel in channels_for(prefs[uid], emails[uid], alert.severity, only):
                key = DIGEST_KEY if channel == Channel.DIGEST else alert.grouping_key
                wanted.setdefault((uid, channel, key), []).append(alert)
    if not wanted:
        return []

    recipients = {uid for uid, _, _ in wanted}
    keys = {key for _, _, key in wanted}
    pending = {
        (d.recipient_id, d.channel, d.grouping_key): d
        for d in NotificationDelivery.objects.select_for_update().filter(
            status=NotificationDelivery.Status.PENDING, recipient_id__in=recipients, grouping_key__in=keys
        )
    }
    since = now - dt.timedelta(minutes=config.group_interval_minutes)
    last_sent = {
        (row["recipient_id"], row["channel"], row["grouping_key"]): row["last"]
        for row in NotificationDelivery.objects.filter(
            recipient_id__in=recipients, grouping_key__in=keys, sent_at__gte=since
        )
        .values("recipient_id", "channel", "grouping_key")
        .annotate(last=Max("sent_at"))
    }
    # Carried already: by any delivery, or (repeat) by one still waiting to go out.
    carried = NotificationDelivery.alerts.through.objects.filter(
        alert_id__in=alert_ids, notificationdelivery__recipient_id__in=recipients
    )
    if repeat:
        carried = carried.filter(notificationdelivery__status=NotificationDelivery.Status.PENDING)
    already = set(
        carried.values_list("alert_id", "notificationdelivery__recipient_id", "notificationdelivery__channel")
    )

    new: list[tuple[NotificationDelivery, list[Alert]]] = []
    joined: list[tuple[NotificationDelivery, list[Alert]]] = []
    moved: list[NotificationDelivery] = []
    for (uid, channel, key), group in wanted.items():
        group = [alert for alert in group if (alert.pk, uid, channel) not in already]
        if not group:
            continue
        worst = max((a.severity for a in group), key=SEVERITY_RANK.__getitem__)
        delivery = pending.get((uid, channel, key))
        if delivery is not None:
            joined.append((delivery, group))
            if worst == Alert.Severity.CRITICAL and channel != Channel.DIGEST:
                # Critical news does not wait for quiet hours or a group interval.
                sooner = now + dt.timedelta(seconds=config.group_wait_seconds)
                if delivery.due_at > sooner:
                    delivery.due_at = sooner
                    moved.append(delivery)
            continue
        due = _due_at(
            now=now,
            channel=channel,
            severity=worst,
            pref=prefs[uid],
            config=config,
            last_sent=last_sent.get((uid, channel, key)),
        )
        delivery = NotificationDelivery(alert=group[0], channel=channel, recipient_id=uid, grouping_key=key, due_at=due)
        new.append((delivery, group))

    NotificationDelivery.objects.bulk_create([delivery for delivery, _ in new], batch_size=1000)
    if moved:
        NotificationDelivery.objects.bulk_update(moved, ["due_at"])
    through = NotificationDelivery.alerts.through
    through.objects.bulk_create(
        [
            through(notificationdelivery_id=delivery.pk, alert_id=alert.pk)
            for delivery, group in [*new, *joined]
            for alert in group
        ],
        batch_size=2000,
        ignore_conflicts=True,
    )
    due = [d.pk for d, _ in new if d.due_at <= now] + [d.pk for d in moved if d.due_at <= now]
    return sorted(due)
