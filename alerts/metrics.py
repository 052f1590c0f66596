"""Prometheus metrics about alerts (listed in MONITORING_METRIC_SOURCES)."""

import datetime as dt
from collections.abc import Iterable

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from alerts.models import Alert, NotificationDelivery


def collect() -> Iterable[Metric]:
    raised = GaugeMetricFamily(
        "churnshield_alerts_raised_last_hour", "Alerts created in the last hour", labels=["severity"]
    )
    # Served by the created_at index; a total would be a full count and shrink under retention.
    counts = dict(
        Alert.objects.filter(created_at__gte=timezone.now() - dt.timedelta(hours=1))
        .values_list("severity")
        .annotate(n=Count("id"))
        .order_by()
    )
    for severity in Alert.Severity.values:
        raised.add_metric([severity], counts.get(severity, 0))
    unread = GaugeMetricFamily("churnshield_alerts_unread", "Alerts nobody has read yet")
    unread.add_metric([], Alert.objects.filter(read=False).count())
    deliveries = GaugeMetricFamily(
        "churnshield_notification_deliveries_last_day",
        "Notification deliveries created in the last 24 hours, by channel and status",
        labels=["channel", "status"],
    )
    for channel, status, n in (
        NotificationDelivery.objects.filter(created_at__gte=timezone.now() - dt.timedelta(days=1))
        .values_list("channel", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        deliveries.add_metric([channel, status], n)
    return [raised, unread, deliveries]
