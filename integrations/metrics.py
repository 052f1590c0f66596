"""Prometheus metrics about data sync (listed in MONITORING_METRIC_SOURCES): sync lag and errors
per integration, webhook backlog and dead letters — read from `integration_health()`, one query —
and refused webhook deliveries by reason (`webhook_rejection_counts()`, one cache read)."""

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from integrations.selectors import integration_health, webhook_rejection_counts


def collect() -> Iterable[Metric]:
    labels = ["integration", "provider"]
    lag = GaugeMetricFamily(
        "churnshield_integration_sync_lag_seconds", "Seconds since the last successful sync", labels=labels
    )
    failures = GaugeMetricFamily(
        "churnshield_integration_consecutive_failures", "Sync runs failed in a row", labels=labels
    )
    failed_runs = GaugeMetricFamily(
        "churnshield_integration_failed_runs_last_day", "Failed sync runs in the last 24 hours", labels=labels
    )
    backlog = GaugeMetricFamily(
        "churnshield_webhook_backlog", "Webhook deliveries stored but not yet applied", labels=labels
    )
    oldest = GaugeMetricFamily(
        "churnshield_webhook_oldest_pending_seconds", "Age of the oldest unapplied webhook delivery", labels=labels
    )
    dead = GaugeMetricFamily("churnshield_webhook_dead_letters", "Webhook deliveries in dead letter", labels=labels)
    for row in integration_health():
        key = [row["name"], row["provider"] or ""]
        if row["sync_lag_seconds"] is not None:
            lag.add_metric(key, row["sync_lag_seconds"])
        failures.add_metric(key, row["consecutive_failures"])
        failed_runs.add_metric(key, row["failed_runs_24h"])
        backlog.add_metric(key, row["webhook_backlog"])
        oldest.add_metric(key, row["webhook_oldest_pending_seconds"] or 0)
        dead.add_metric(key, row["webhook_dead_letters"])
    # Refused deliveries by reason: `clock_skew` rising alone means a clock is off (ours or the
    # provider's), `invalid_signature` means a wrong or rotated secret (or someone probing).
    rejections = CounterMetricFamily(
        "churnshield_webhook_rejections", "Webhook deliveries refused, by reason", labels=["provider", "reason"]
    )
    for (provider, reason), count in sorted(webhook_rejection_counts().items()):
        rejections.add_metric([provider, reason], count)
    return [lag, failures, failed_runs, backlog, oldest, dead, rejections]
