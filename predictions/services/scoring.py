"""Scoring: features → probability → explanation → stored prediction → customer row → alerts.

The daily batch and the real-time re-score of one customer run the same code path.
"""

import datetime as dt
import time
import uuid
from collections.abc import Iterable
from decimal import Decimal

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from alerts.selectors import notification_settings_get
from alerts.services import alerts_create_many, alerts_resolve_cleared
from churnshield.exceptions import ConflictError
from customers.models import Customer
from customers.selectors import risk_level
from customers.services import customer_scores_set
from predictions.causes import recommended_actions
from predictions.data import load_tables
from predictions.ml import rules
from predictions.ml.explain import explain_batch
from predictions.ml.features import build_features, usage_features
from predictions.ml.training import psi
from predictions.models import ChurnPrediction, ModelVersion, PredictionRun
from predictions.selectors import champion, health_weights
from predictions.services.portfolio import churn_causes_refresh, portfolio_snapshot_take
from predictions.services.registry import loaded_model, probabilities, rules_version

LEVEL_RANK = {"low": 0, "medium": 1, "high": 2}


def confidence(probability: float) -> float:
    """How far the calibrated probability is from a coin toss (0.5 → 0, 0 or 1 → 1)."""
    return round(abs(probability - 0.5) * 2, 4)


def _explain(
    version: ModelVersion, features: pd.DataFrame, proba: np.ndarray, weights: dict[str, float]
) -> list[list[dict]]:
    model = loaded_model(version)
    if model is None:
        return rules.rules_explain(features, weights=weights)
    return explain_batch(model, features, proba)


def score_customers(
    *,
    customer_ids: Iterable[int] | None = None,
    trigger: str = PredictionRun.Trigger.BATCH,
    run_key: str | None = None,
    now: dt.datetime | None = None,
) -> PredictionRun:
    """Score active customers (all, or the listed ones) with the champion model.

    Idempotent per `run_key`: the batch of a day is `batch:<date>` and runs once; a second call
    returns the completed run and writes nothing.
    """
    now = now or timezone.now()
    run_key = run_key or (f"batch:{now:%Y-%m-%d}" if trigger == PredictionRun.Trigger.BATCH else uuid.uuid4().hex)
    existing = PredictionRun.objects.filter(run_key=run_key, status=PredictionRun.Status.COMPLETED).first()
    if existing is not None:
        return existing
    version = champion() or rules_version()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    tables = load_tables(customer_ids=customer_ids, as_of=now)
    timings["load_s"] = time.perf_counter() - started
    features = build_features(tables, pd.Timestamp(now))
    timings["features_s"] = time.perf_counter() - started - timings["load_s"]
    mark = time.perf_counter()
    weights = health_weights()
    proba = probabilities(version, features, weights=weights)
    timings["predict_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    causes = _explain(version, features, proba, weights)
    model = loaded_model(version)
    drift = psi(model.reference_stats, features) if model is not None and len(features) >= 100 else {}
    # Usage counters are today's snapshot: fine for today's health score, never a model feature.
    health = rules.health_components(features.join(usage_features(tables)), weights=weights)
    timings["explain_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    with transaction.atomic():
        run, _ = PredictionRun.objects.update_or_create(
            run_key=run_key,
            defaults={"trigger": trigger, "model_version": version, "started_at": now, "status": "running"},
        )
        rises = _write_back(run, version, features.index, proba, causes, health, now)
        run.status, run.finished_at = PredictionRun.Status.COMPLETED, timezone.now()
        run.customers_scored, run.risk_rises = len(features.index), rises
        timings["write_s"] = time.perf_counter() - mark
        run.timings = {key: round(value, 4) for key, value in timings.items()}
        run.drift = {name: round(value, 4) for name, value in drift.items()}
        run.save()
        if trigger == PredictionRun.Trigger.BATCH:
            transaction.on_commit(_refresh_aggregates)
        # Listeners (playbook trigger rules) act on the new scores once they are committed.
        scored_ids = None if customer_ids is None else [int(i) for i in features.index]
        transaction.on_commit(lambda: customers_scored.send(sender=PredictionRun, run=run, customer_ids=scored_ids))
    return run


# Sent after a scoring run commits: `run`, and `customer_ids` (None for the whole book).
customers_scored = Signal()


def _refresh_aggregates() -> None:
    churn_causes_refresh()
    portfolio_snapshot_take()


def _write_back(
    run: PredictionRun,
    version: ModelVersion,
    customer_ids: pd.Index,
    proba: np.ndarray,
    causes: list[list[dict]],
    health: pd.DataFrame,
    now: dt.datetime,
) -> int:
    """Prediction rows, customer risk and health, an alert for every risk level that rose or sharp
    health drop, and auto-resolution of the alerts whose condition cleared."""
    ids = [int(i) for i in customer_ids]
    # One read of the previous risk and the names; a large run reads the table rather than a
    # huge IN list.
    known = Customer.objects.filter(pk__in=ids) if len(ids) <= 5000 else Customer.objects.all()
    before = {
        pk: (risk, name, health, owner_id)
        for pk, risk, name, health, owner_id in known.values_list(
            "pk", "churn_risk", "name", "health_score", "owner_id"
        )
    }
    drop_points = notification_settings_get().health_drop_points
    health_rows = health.to_dict("records")
    predictions, customers, alerts = [], [], []
    for position, customer_id in enumerate(ids):
        probability = float(np.clip(proba[position], 0.0, 1.0))
        risk = Decimal(f"{probability:.4f}")
        level = risk_level(probability)
        components = {key: round(value) for key, value in health_rows[position].items()}
        score = components.pop("health_score")
        predictions.append(
            (
                customer_id,
                risk,
                level,
                causes[position],
                now,
                version.version,
                score,
                components,
                confidence(probability),
            )
        )
        customers.append((customer_id, risk, score))
        old_risk, name, old_health, owner_id = before.get(customer_id, (0, customer_id, None, None))
        old_level = risk_level(float(old_risk))
        if LEVEL_RANK[level] > LEVEL_RANK[old_level] and level != "low":
            top = causes[position][0]["factor"] if causes[position] else "several signals"
            alerts.append(
                {
                    "title": f"{level.capitalize()} churn risk: {name}",
                    "message": f"Churn risk rose from {old_level} to {level} ({probability:.0%}); main factor: {top}.",
                    "severity": "critical" if level == "high" else "high",
                    "customer_id": customer_id,
                    "owner_id": owner_id,
                    "source": "risk_rise",
                    "context": {"level": level, "risk": round(probability, 4)},
                }
            )
        if old_health is not None and old_health - score >= drop_points:
            alerts.append(
                {
                    "title": f"Health dropped sharply: {name}",
                    "message": f"Health score fell from {old_health} to {score}.",
                    "severity": "high" if old_health - score >= 2 * drop_points else "medium",
                    "customer_id": customer_id,
                    "owner_id": owner_id,
                    "source": "health_drop",
                    "context": {"health_before": old_health, "health_after": score},
                }
            )
    _insert_predictions(run, predictions)
    customer_scores_set(scores=customers)
    # One set-based UPDATE: risk or health back where it was resolves the alerts it raised.
    alerts_resolve_cleared(customer_ids=ids if len(ids) <= 5000 else None, now=now)
    if alerts:
        alerts_create_many(alerts=alerts)
    return sum(1 for alert in alerts if alert["source"] == "risk_rise")


PREDICTION_COLUMNS = (
    "customer_id",
    "churn_probability",
    "risk_level",
    "top_causes",
    "prediction_date",
    "model_version",
    "health_score",
    "health_components",
    "confidence",
)


def _insert_predictions(run: PredictionRun, rows: list[tuple]) -> None:
    """PostgreSQL: COPY (tens of thousands of rows a second); elsewhere `bulk_create`."""
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        columns = ", ".join((*PREDICTION_COLUMNS, "run_id"))
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY churn_predictions ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row((*row[:3], Jsonb(row[3]), *row[4:7], Jsonb(row[7]), row[8], run.pk))
        return
    ChurnPrediction.objects.bulk_create(
        [ChurnPrediction(run=run, **dict(zip(PREDICTION_COLUMNS, row, strict=True))) for row in rows], batch_size=2000
    )


RESCORE_DEBOUNCE_SECONDS = 5


def rescore_after_commit(*, customer_id: int) -> bool:
    """Hook for significant events (ticket opened, payment failed, NPS answer, long-gap login).

    Enqueues a re-score of the customer once the caller's transaction commits, at most once per
    customer every few seconds (a burst of events costs one re-score). Returns False when a
    re-score is already pending.
    """
    from predictions.tasks import rescore_customer

    if not cache.add(f"rescore:{customer_id}", 1, timeout=RESCORE_DEBOUNCE_SECONDS):
        return False
    transaction.on_commit(lambda: rescore_customer.delay(customer_id))
    return True


def score_one(*, customer_id: int) -> ChurnPrediction:
    """Re-score one customer now (real time) and return the stored prediction.

    A churned customer is not re-scored: their last prediction stands.
    """
    run = score_customers(customer_ids=[customer_id], trigger=PredictionRun.Trigger.EVENT)
    prediction = ChurnPrediction.objects.filter(run=run, customer_id=customer_id).first()
    if prediction is None:
        prediction = ChurnPrediction.objects.filter(customer_id=customer_id).order_by("-prediction_date", "-id").first()
    if prediction is None:
        raise ConflictError("This customer has churned and was never scored.")
    return prediction


def prediction_payload(prediction: ChurnPrediction) -> dict:
    """The contract's predict response body (without responseTime)."""
    probability = float(prediction.churn_probability)
    return {
        "customerId": prediction.customer_id,
        "churnProbability": f"{probability * 100:.2f}",
        "riskLevel": prediction.risk_level,
        "topCauses": [
            {"factor": cause.get("factor"), "impact": cause.get("impact"), "value": cause.get("value")}
            for cause in prediction.top_causes
        ],
        "confidence": f"{(prediction.confidence or 0) * 100:.2f}",
        "recommendedActions": recommended_actions(prediction.top_causes, prediction.risk_level),
    }
