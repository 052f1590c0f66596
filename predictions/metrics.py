"""Prometheus metrics about scoring, from the prediction tables (listed in MONITORING_METRIC_SOURCES)."""

from collections.abc import Iterable

from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from predictions.models import PredictionRun
from predictions.selectors import champion


def collect() -> Iterable[Metric]:
    made = CounterMetricFamily("churnshield_predictions", "Customers scored by completed runs", labels=["trigger"])
    runs = CounterMetricFamily("churnshield_prediction_runs", "Scoring runs", labels=["trigger", "status"])
    # prediction_runs is small (one row a day plus real-time re-scores): two grouped reads.
    for row in (
        PredictionRun.objects.filter(status=PredictionRun.Status.COMPLETED)
        .values("trigger")
        .annotate(n=Sum("customers_scored"))
        .order_by()
    ):
        made.add_metric([row["trigger"]], row["n"] or 0)
    for row in PredictionRun.objects.values("trigger", "status").annotate(n=Count("id")).order_by():
        runs.add_metric([row["trigger"], row["status"]], row["n"])

    duration = GaugeMetricFamily(
        "churnshield_batch_duration_seconds", "Wall time of the last completed batch scoring run"
    )
    phases = GaugeMetricFamily(
        "churnshield_batch_phase_seconds", "Phases of the last completed batch scoring run", labels=["phase"]
    )
    age = GaugeMetricFamily("churnshield_batch_age_seconds", "Seconds since the last completed batch scoring run")
    scored = GaugeMetricFamily("churnshield_batch_customers_scored", "Customers scored by the last batch")
    last = (
        PredictionRun.objects.filter(trigger=PredictionRun.Trigger.BATCH, status=PredictionRun.Status.COMPLETED)
        .order_by("-finished_at")
        .only("started_at", "finished_at", "timings", "customers_scored")
        .first()
    )
    if last is not None and last.finished_at is not None:
        duration.add_metric([], (last.finished_at - last.started_at).total_seconds())
        age.add_metric([], (timezone.now() - last.finished_at).total_seconds())
        scored.add_metric([], last.customers_scored)
        for phase, seconds in sorted((last.timings or {}).items()):
            phases.add_metric([phase.removesuffix("_s")], float(seconds))

    model = GaugeMetricFamily("churnshield_model_info", "The champion model (value 1)", labels=["version", "kind"])
    trained = GaugeMetricFamily("churnshield_model_trained_timestamp_seconds", "When the champion was trained")
    version = champion()
    if version is not None:
        model.add_metric([version.version, version.kind], 1)
        trained.add_metric([], version.trained_at.timestamp())
    return [made, runs, duration, phases, age, scored, model, trained]
