"""Metrics sources owned by monitoring itself: Celery queues and backups."""

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from monitoring import selectors


def celery_metrics() -> Iterable[Metric]:
    depth = GaugeMetricFamily(
        "churnshield_celery_queue_length", "Messages waiting in a Celery queue (Redis broker)", labels=["queue"]
    )
    unacked = GaugeMetricFamily(
        "churnshield_celery_unacked_messages", "Messages delivered to a worker and not yet acknowledged"
    )
    stats = selectors.celery_queue_stats()
    for queue, length in sorted(stats["queues"].items()):
        depth.add_metric([queue], length)
    unacked.add_metric([], stats["unacked"])
    beat_age = GaugeMetricFamily("churnshield_beat_last_tick_age_seconds", "Seconds since beat's last tick")
    age = selectors.beat_last_tick_age()
    if age is not None:
        beat_age.add_metric([], age)
    return [depth, unacked, beat_age]


def backup_metrics() -> Iterable[Metric]:
    latest = selectors.latest_backup()
    age = GaugeMetricFamily("churnshield_backup_age_seconds", "Seconds since the newest database backup")
    size = GaugeMetricFamily("churnshield_backup_size_bytes", "Size of the newest database backup")
    count = GaugeMetricFamily("churnshield_backups", "Backup files kept")
    count.add_metric([], len(selectors.backups()))
    if latest is not None:
        age.add_metric([], latest["age_seconds"])
        size.add_metric([], latest["size"])
    return [age, size, count]
