"""Reads about predictions and churn causes, scoped to what the user may see."""

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Avg, Count, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from core.auth.roles import sees_all_customers
from core.exceptions import NotFoundError
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from customers.selectors import customer_scope, iso, risk_thresholds
from customers.timeline import events_after
from predictions.causes import CAUSES, impact_percent
from predictions.ml.drift import drift_summary
from predictions.ml.features import feature_info
from predictions.models import (
    ChurnCause,
    ChurnPrediction,
    HealthWeights,
    ModelVersion,
    ModelVersionChange,
    PredictionRun,
)


def latest_prediction(customer_id: int) -> ChurnPrediction | None:
    """The customer's newest prediction (None before the first scoring)."""
    return ChurnPrediction.objects.filter(customer_id=customer_id).order_by("-prediction_date", "-id").first()


def prediction_events(customer_id: int, cursor: Any, limit: int) -> list[dict]:
    def render(row: ChurnPrediction) -> dict:
        factors = [str(cause.get("factor", "")) for cause in row.top_causes[:3] if isinstance(cause, dict)]
        return {
            "title": f"Churn risk {float(row.churn_probability) * 100:.1f}% ({row.risk_level})",
            "detail": ", ".join(factor for factor in factors if factor),
            "ref": {"kind": "prediction", "id": row.pk},
        }

    return events_after(
        ChurnPrediction.objects.filter(customer_id=customer_id),
        event_type="prediction",
        field="prediction_date",
        cursor=cursor,
        limit=limit,
        render=render,
    )


def cause_impact(percent: float) -> str:
    if percent >= 30:
        return ChurnCause.Impact.HIGH
    if percent >= 10:
        return ChurnCause.Impact.MEDIUM
    return ChurnCause.Impact.LOW


# PostgreSQL: the count in the database — one index probe per customer for the latest prediction,
# its causes unnested there (2.0 s of Python over 80,000 customers before; see ADR 0015).
_LATEST_CAUSES = """
WITH chosen(id) AS ({customers}),
latest AS (
  SELECT p.top_causes FROM chosen c CROSS JOIN LATERAL (
    SELECT top_causes FROM churn_predictions WHERE customer_id = c.id
    ORDER BY prediction_date DESC, id DESC LIMIT 1) p
  WHERE jsonb_typeof(p.top_causes) = 'array'
)
SELECT NULL, count(*) FROM chosen
UNION ALL
SELECT x.cause, count(*) FROM latest CROSS JOIN LATERAL (
  SELECT DISTINCT e ->> 'cause' AS cause FROM jsonb_array_elements(latest.top_causes) e
  WHERE jsonb_typeof(e) = 'object' AND e ? 'cause') x
GROUP BY x.cause
"""


def count_latest_causes(customers: QuerySet[Customer]) -> tuple[Counter[str], int]:
    """How many of `customers` have each cause in their latest prediction, and how many there are."""
    if connection.vendor == "postgresql":
        sql, params = customers.order_by().values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(_LATEST_CAUSES.format(customers=sql), params)
            rows = cursor.fetchall()
        total = next(count for cause, count in rows if cause is None)
        return Counter({cause: count for cause, count in rows if cause is not None}), total
    return _count_latest_causes_in_python(customers)


def _count_latest_causes_in_python(customers: QuerySet[Customer]) -> tuple[Counter[str], int]:
    latest = (
        ChurnPrediction.objects.filter(customer=OuterRef("pk"))
        .order_by("-prediction_date", "-id")
        .values("top_causes")[:1]
    )
    counts: Counter[str] = Counter()
    total = 0
    for top_causes in (
        customers.annotate(latest_causes=Subquery(latest))
        .values_list("latest_causes", flat=True)
        .iterator(chunk_size=5000)
    ):
        total += 1
        if isinstance(top_causes, str):  # SQLite hands back a subquery's JSON as text
            top_causes = json.loads(top_causes)
        counts.update({cause["cause"] for cause in top_causes or [] if isinstance(cause, dict) and "cause" in cause})
    return counts, total


def churn_cause_rows(*, user: Any) -> list[dict]:
    """The aggregated churn causes the user may see.

    Managers, admins and viewers read the `churn_causes` table (the whole book of business,
    refreshed by the scoring batch). For a CSM the same causes are counted over their own
    portfolio from each customer's latest prediction, so the figures never include accounts
    they may not see.
    """
    causes = list(ChurnCause.objects.order_by("-count", "id"))
    if sees_all_customers(user):
        return [
            {"id": c.pk, "cause": c.cause, "count": c.count, "percent": c.percent, "impact": c.impact} for c in causes
        ]
    counts, total = count_latest_causes(customer_scope(user=user).filter(is_active=True))
    rows: list[dict[str, Any]] = []
    for cause in causes:
        count = counts.get(cause.cause, 0)
        percent = round(100 * count / total) if total else 0
        rows.append(
            {"id": cause.pk, "cause": cause.cause, "count": count, "percent": percent, "impact": cause_impact(percent)}
        )
    rows.sort(key=lambda row: (-row["count"], row["id"]))
    return rows


ICONS = {
    "product": "fas fa-chart-line",
    "billing": "fas fa-credit-card",
    "support": "fas fa-headset",
    "competition": "fas fa-building",
    "other": "fas fa-comment-dots",
}


def book_causes(*, user: Any) -> list[dict]:
    """The app's causes view over the user's book: `{name, description, impact %, category, icon}`."""
    rows = churn_cause_rows(user=user)
    info = {
        cause: (category, description)
        for cause, category, description in ChurnCause.objects.values_list("cause", "category", "description")
    }
    return [
        {
            "name": row["cause"],
            "description": f"{info.get(row['cause'], ('other', ''))[1]} — affecting {row['count']} customers".strip(
                " —"
            ),
            "impact": row["percent"],
            "category": info.get(row["cause"], ("other", ""))[0],
            "icon": ICONS.get(info.get(row["cause"], ("other", ""))[0], ICONS["other"]),
        }
        for row in rows
        if row["count"]
    ]


def customer_causes(customer_id: int) -> list[dict]:
    """One customer's causes from their latest prediction, in the same shape as `book_causes`."""
    prediction = ChurnPrediction.objects.filter(customer_id=customer_id).order_by("-prediction_date", "-id").first()
    if prediction is None:
        return []
    causes = []
    for cause in prediction.top_causes:
        category = cause.get("category") or CAUSES.get(cause.get("cause"), CAUSES["Low engagement"]).category
        causes.append(
            {
                "name": cause.get("cause"),
                "description": cause.get("value") or cause.get("factor") or "",
                "impact": impact_percent(cause.get("impact")),
                "category": category,
                "icon": ICONS.get(category, ICONS["other"]),
            }
        )
    return causes


def stored_predictions(*, user: Any, customer_ids: list[int]) -> list[Mapping[str, Any]]:
    """Latest stored prediction of each listed customer that has one, in the order asked, as rows of
    `customer_id`, `churn_probability`, `risk_level`, `top_causes`, `confidence` (ids outside the
    portfolio: 404)."""

    wanted = list(dict.fromkeys(customer_ids))
    visible = set(customer_scope(user=user).filter(pk__in=wanted).values_list("pk", flat=True))
    missing = [i for i in wanted if i not in visible]
    if missing:
        raise NotFoundError(f"Customers not found: {', '.join(map(str, missing[:20]))}")
    newest = (
        ChurnPrediction.objects.filter(customer=OuterRef("pk")).order_by("-prediction_date", "-id").values("pk")[:1]
    )
    latest_ids = Customer.objects.filter(pk__in=wanted).annotate(latest=Subquery(newest)).values("latest")
    latest = {
        row["customer_id"]: row
        for row in ChurnPrediction.objects.filter(pk__in=latest_ids).values(
            "customer_id", "churn_probability", "risk_level", "top_causes", "confidence"
        )
    }
    return [latest[customer_id] for customer_id in wanted if customer_id in latest]


def health_weights() -> dict[str, float]:
    """The health score's weights as saved in the admin (the defaults until someone saves them)."""
    saved = HealthWeights.objects.order_by("pk").first()
    return saved.as_dict() if saved is not None else HealthWeights().as_dict()


# The dashboard's health bands (ml_analytics): a customer "changes level" when the band changes.
HEALTH_BANDS: tuple[tuple[str, int], ...] = (("excellent", 80), ("good", 60), ("fair", 40), ("poor", 0))
# At most this many active customers are scored for a weights preview (the page says so).
WEIGHTS_PREVIEW_SAMPLE = 2000


def health_band(score: int) -> str:
    return next(name for name, floor in HEALTH_BANDS if score >= floor)


def health_weights_preview(*, user: Any, weights: dict[str, float], sample_size: int = WEIGHTS_PREVIEW_SAMPLE) -> dict:
    """The health scores of the user's active customers (the first `sample_size` by id) under the
    saved weights and under `weights`, from today's features through the rules' own code, as the
    next scoring run would compute them: the distribution in bins of 10 and how many change band.
    Writes nothing."""
    # The ML stack (pandas, the frames, the feature code) loads for this admin preview only, not
    # with every import of the selectors.
    import pandas as pd

    from predictions.data import book_has_events, load_tables
    from predictions.ml import rules
    from predictions.ml.features import FeatureSpec, build_features, usage_features

    active = customer_scope(user=user).filter(is_active=True)
    ids = list(active.order_by("pk").values_list("pk", flat=True)[:sample_size])
    now = timezone.now()
    current_weights = health_weights()
    if ids:
        tables = load_tables(customer_ids=ids, as_of=now, actions=False)
        features = build_features(tables, pd.Timestamp(now), FeatureSpec(snapshot=not book_has_events()))
        usage = usage_features(tables)
        features = features.join(usage.drop(columns=usage.columns.intersection(features.columns)))
        current = rules.health_components(features, weights=current_weights)["health_score"].tolist()
        proposed = rules.health_components(features, weights=weights)["health_score"].tolist()
    else:
        current, proposed = [], []

    def bins(scores: list[int]) -> list[int]:
        counts = [0] * 10
        for score in scores:
            counts[min(score // 10, 9)] += 1  # 100 goes with 90–99
        return counts

    before, after = bins(current), bins(proposed)
    return {
        "scored": len(current),
        "active_customers": active.count(),
        "sample_size": sample_size,
        "bins": [
            {
                "label": f"{10 * i}–{10 * i + 9 if i < 9 else 100}",
                "current": before[i],
                "proposed": after[i],
                "difference": after[i] - before[i],
            }
            for i in range(10)
        ],
        "change_band": sum(health_band(a) != health_band(b) for a, b in zip(current, proposed, strict=True)),
        "change_score": sum(a != b for a, b in zip(current, proposed, strict=True)),
    }


def facts_end() -> dt.datetime | None:
    """The latest date any customer fact carries (None for an empty book): a book imported from
    another system can end long before today, and a model trained "now" would see no history."""
    reads = (
        Customer.objects.aggregate(a=Max("signup_date"), b=Max("churned_at"), c=Max("last_login")),
        UserSession.objects.aggregate(a=Max("started_at")),
        SupportTicket.objects.aggregate(a=Max("opened_at"), b=Max("solved_at")),
        NpsResponse.objects.aggregate(a=Max("responded_at")),
        BillingEvent.objects.aggregate(a=Max("occurred_at")),
    )
    dates = [value for read in reads for value in read.values() if value is not None]
    return max(dates, default=None)


def default_as_of(now: dt.datetime) -> tuple[dt.datetime, str | None]:
    """The as-of date of a run given none: `now`, unless the data ends more than a day before it,
    then the data's end (with a note saying so)."""
    end = facts_end()
    if end is not None and end < now - dt.timedelta(days=1):
        return end, f"The data ends on {end:%Y-%m-%d %H:%M} UTC, before today: as of then (pass --as-of to choose)."
    return now, None


class _ChampionBands:
    """The champion's risk bands (medium, high), read at most every `ttl` seconds per process
    (every request that shows a risk level asks); None on a cold start or for an older model
    without bands: the settings' fixed thresholds then apply."""

    ttl = 30.0

    def __init__(self) -> None:
        self._value: tuple[float, float] | None = None
        self._read_at = -1e18

    def __call__(self) -> tuple[float, float] | None:
        now = time.monotonic()
        if now - self._read_at > self.ttl:
            params = (
                ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION)
                .values_list("params", flat=True)
                .first()
            )
            bands = (params or {}).get("risk_thresholds")
            self._value = (float(bands["medium"]), float(bands["high"])) if bands else None
            self._read_at = now
        return self._value

    def forget(self) -> None:
        self._read_at = -1e18


champion_risk_bands = _ChampionBands()


def version_risk_bands(version: ModelVersion) -> tuple[float, float] | None:
    """The bands a model version was trained with, or for the rules the ranks measured on the book
    by the latest training (None: the settings' thresholds, e.g. on a cold start)."""
    bands = (version.params or {}).get("risk_thresholds")
    return (float(bands["medium"]), float(bands["high"])) if bands else None


def champion() -> ModelVersion | None:
    """The model version that scores customers now (None before the first training)."""
    return ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).defer("artifact").first()


def previous_champion(version: ModelVersion) -> ModelVersion | None:
    """The version `version` replaced when it last became champion (None when it replaced none,
    or became champion before changes were recorded): what a roll back restores."""
    change = (
        ModelVersionChange.objects.filter(version=version)
        .select_related("previous")
        .defer("previous__artifact")
        .order_by("-changed_at", "-id")
        .first()
    )
    return change.previous if change is not None else None


@dataclass(frozen=True)
class FeatureImportance:
    """One feature's share of the champion's global importance (mean |SHAP|)."""

    label: str
    category: str
    share: float  # percent of the total, the shares summing to 100
    raw: float  # the stored mean |SHAP|
    higher_is_riskier: bool


def feature_importance() -> list[FeatureImportance]:
    """Global importance of the champion, most important first (none before the first training)."""

    version = champion()
    if version is None or not version.importance:
        return []
    total = sum(version.importance.values()) or 1.0
    rows = []
    for name, raw in sorted(version.importance.items(), key=lambda item: -item[1]):
        info = feature_info(name)
        rows.append(
            FeatureImportance(
                label=info.label,
                category=info.category,
                share=100 * raw / total,
                raw=raw,
                higher_is_riskier=info.higher_is_riskier,
            )
        )
    return rows


def model_metrics_latest() -> dict:
    """The champion's model card in the contract's snake_case shape, from the registry."""

    version = champion()
    if version is None:
        raise NotFoundError("No model has been trained yet.")
    metrics = version.metrics or {}
    window = version.training_window or {}
    return {
        "version": version.version,
        "kind": version.kind,
        "status": version.status,
        "status_reason": version.status_reason,
        "trained_at": iso(version.trained_at),
        "cv_metrics": {
            **{
                key: metrics.get(key)
                for key in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_at_10pct", "ece")
                if key in metrics
            },
            **_operating_points(metrics.get("threshold_table", [])),
        },
        "baseline_metrics": {
            key: (version.baseline_metrics or {}).get(key)
            for key in ("roc_auc", "pr_auc", "brier", "lift_at_10pct", "ece")
            if key in (version.baseline_metrics or {})
        },
        "calibration": {
            "method": version.params.get("calibration", "isotonic") if version.params else None,
            "reliability_score": metrics.get("ece"),
            "max_calibration_error": metrics.get("max_calibration_error"),
        },
        "data_window": {
            "start_date": window.get("start"),
            "end_date": window.get("end"),
            "n_samples": metrics.get("n_samples"),
            "positive_rate": metrics.get("positive_rate"),
            "feature_count": len(version.feature_names or []),
        },
        # `f1_score` is the contract's name for the stored `f1`.
        "threshold_table": [{**row, "f1_score": row.get("f1")} for row in metrics.get("threshold_table", [])],
        "feature_importance": [
            {"feature": name, "importance": round(value, 6)}
            for name, value in sorted((version.importance or {}).items(), key=lambda item: -item[1])
        ],
        "performance_by_segment": metrics.get("performance_by_segment", {}),
        "drift_metrics": _drift(version),
    }


def _operating_points(table: list[dict]) -> dict:
    """The contract's precision at 95 % recall and recall at 95 % precision, read off the stored
    threshold table (so on its grid of thresholds; None when no threshold reaches 95 %)."""
    precisions = [row["precision"] for row in table if row.get("recall", 0) >= 0.95]
    recalls = [row["recall"] for row in table if row.get("precision", 0) >= 0.95]
    return {
        "precision_at_95_recall": max(precisions, default=None),
        "recall_at_95_precision": max(recalls, default=None),
    }


def _accuracy(metrics: dict, row: dict) -> float | None:
    """Accuracy at one threshold-table row, from its precision/recall/contacted and the sample."""
    n, rate = metrics.get("n_samples"), metrics.get("positive_rate")
    if not n or rate is None or "contacted" not in row:
        return None
    positives = rate * n
    true_positives = row["recall"] * positives
    wrong = (row["contacted"] - true_positives) + (positives - true_positives)
    return round(1 - wrong / n, 6)


def batch_drift(values: dict[str, float]) -> dict:
    """`drift_summary` of a run's per-feature PSI with the thresholds from the settings."""
    return drift_summary(values, moderate=settings.DRIFT_MODERATE_PSI, major=settings.DRIFT_MAJOR_PSI)


def _drift(version: Any) -> dict:
    """PSI of the latest batch scored with `version` against its training data, and the latest
    retrain a batch's major drift scheduled (with any version: it may have replaced this one)."""

    run = (
        PredictionRun.objects.filter(model_version=version, trigger="batch", status="completed")
        .exclude(drift={})
        .order_by("-started_at")
        .first()
    )
    retrain = _drift_retrain()
    if run is None:
        return {
            "feature_drift_score": None,
            "last_drift_check": None,
            "drift_status": "unknown",
            "by_feature": {},
            "retrain": retrain,
        }
    return {
        **batch_drift(run.drift),
        "last_drift_check": iso(run.started_at),
        "thresholds": {"moderate": settings.DRIFT_MODERATE_PSI, "major": settings.DRIFT_MAJOR_PSI},
        "by_feature": run.drift,
        "retrain": retrain,
    }


def _drift_retrain() -> dict | None:
    """The latest drift retrain: when it was scheduled, after which batch, and what it gave."""
    run = (
        PredictionRun.objects.filter(retrain_scheduled_at__isnull=False)
        .select_related("retrain_version")
        .order_by("-retrain_scheduled_at")
        .first()
    )
    if run is None:
        return None
    version = run.retrain_version
    return {
        "status": "scheduled" if run.retrain_finished_at is None else "ran",
        "scheduled_at": iso(run.retrain_scheduled_at),
        "finished_at": iso(run.retrain_finished_at) if run.retrain_finished_at else None,
        "after_batch": run.run_key,
        "feature_drift_score": batch_drift(run.drift)["feature_drift_score"],
        "version": version.version if version else None,
        "version_status": version.status if version else None,
        "reason": version.status_reason if version else None,
    }


@dataclass(frozen=True)
class MlAnalytics:
    """The ML analytics page's figures over the user's active customers."""

    total: int
    model_version: str | None
    performance: dict[str, float | None]  # the champion's metrics, at the 0.5 threshold where per threshold
    feature_importance: list[FeatureImportance]
    health_average: float  # mean health score
    health_bands: dict[str, int]  # customers per health band (excellent, good, fair, poor)
    risk_average: float  # mean churn probability, 0–1
    risk_levels: dict[str, int]  # customers per risk level (high, medium, low)
    health_trends: dict[str, int]  # improving, declining, stable between the last two batches


def _health_trends(customers: QuerySet[Customer]) -> tuple[int, int, int]:
    """Customers whose health rose, fell (by 5+ points) or held between the last two batch runs."""

    runs = list(
        PredictionRun.objects.filter(trigger="batch", status="completed")
        .order_by("-started_at")
        .values_list("pk", flat=True)[:2]
    )
    if len(runs) < 2:
        return 0, 0, customers.count()
    scores: dict[int, dict[int, int]] = {run: {} for run in runs}
    for run, customer_id, score in ChurnPrediction.objects.filter(run__in=runs, customer__in=customers).values_list(
        "run_id", "customer_id", "health_score"
    ):
        scores[run][customer_id] = score or 0
    improving = declining = stable = 0
    for customer_id, now in scores[runs[0]].items():
        before = scores[runs[1]].get(customer_id, now)
        if now - before >= 5:
            improving += 1
        elif before - now >= 5:
            declining += 1
        else:
            stable += 1
    return improving, declining, stable


def ml_analytics(*, user: Any) -> MlAnalytics:
    """The figures of the app's ML analytics page, over the user's visible active customers and the
    champion."""

    active = customer_scope(user=user).filter(is_active=True)
    medium, high = risk_thresholds()
    totals = active.aggregate(
        total=Count("id"),
        health=Avg("health_score"),
        risk=Avg("churn_risk"),
        excellent=Count("id", filter=Q(health_score__gte=80)),
        good=Count("id", filter=Q(health_score__gte=60, health_score__lt=80)),
        fair=Count("id", filter=Q(health_score__gte=40, health_score__lt=60)),
        poor=Count("id", filter=Q(health_score__lt=40)),
        high=Count("id", filter=Q(churn_risk__gte=high)),
        medium=Count("id", filter=Q(churn_risk__gte=medium, churn_risk__lt=high)),
        low=Count("id", filter=Q(churn_risk__lt=medium)),
    )
    version = champion()
    metrics = (version.metrics if version else {}) or {}
    at_half: dict[str, Any] = next(
        (row for row in metrics.get("threshold_table", []) if abs(row.get("threshold", 0) - 0.5) < 1e-9), {}
    )
    improving, declining, stable = _health_trends(active)
    return MlAnalytics(
        total=totals["total"] or 0,
        model_version=version.version if version else None,
        performance={
            "roc_auc": metrics.get("roc_auc"),
            "accuracy": _accuracy(metrics, at_half),
            "precision": at_half.get("precision"),
            "recall": at_half.get("recall"),
            "f1_score": at_half.get("f1_score", at_half.get("f1")),
            "brier": metrics.get("brier"),
            "lift_at_10pct": metrics.get("lift_at_10pct"),
        },
        feature_importance=feature_importance(),
        health_average=float(totals["health"] or 0),
        health_bands={key: totals[key] for key in ("excellent", "good", "fair", "poor")},
        risk_average=float(totals["risk"] or 0),
        risk_levels={key: totals[key] for key in ("high", "medium", "low")},
        health_trends={"improving": improving, "declining": declining, "stable": stable},
    )
