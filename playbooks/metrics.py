"""Prometheus metrics about playbooks (listed in MONITORING_METRIC_SOURCES): executions by status,
step failures by step type, and how late the oldest due execution is."""

import datetime as dt
from collections.abc import Iterable

from django.db.models import Count, Min
from prometheus_client.core import GaugeMetricFamily, Metric

from playbooks.engine import db_now
from playbooks.models import PlaybookExecution, PlaybookStepRun


def collect() -> Iterable[Metric]:
    now = db_now()  # due times are on the database's clock
    executions = GaugeMetricFamily(
        "churnshield_playbook_executions", "Playbook executions by status", labels=["status"]
    )
    counts = dict(PlaybookExecution.objects.values_list("status").annotate(n=Count("id")).order_by())
    for status in PlaybookExecution.Status.values:
        executions.add_metric([status], counts.get(status, 0))
    failures = GaugeMetricFamily(
        "churnshield_playbook_step_failures_last_day",
        "Playbook steps that failed in the last 24 hours, by step type",
        labels=["step_type"],
    )
    for step_type, n in (
        PlaybookStepRun.objects.filter(status=PlaybookStepRun.Status.FAILED, started_at__gte=now - dt.timedelta(days=1))
        .values_list("step_type")
        .annotate(n=Count("id"))
        .order_by()
    ):
        failures.add_metric([step_type], n)
    overdue = GaugeMetricFamily(
        "churnshield_playbook_due_lag_seconds", "How long the oldest due execution has waited to be claimed"
    )
    oldest = PlaybookExecution.objects.filter(status=PlaybookExecution.Status.RUNNING, next_run_at__lte=now).aggregate(
        oldest=Min("next_run_at")
    )["oldest"]
    overdue.add_metric([], (now - oldest).total_seconds() if oldest else 0)
    return [executions, failures, overdue]
