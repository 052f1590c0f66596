"""Reads for the model card page (the admin's model version page): what training stored on the
version, laid out for people, plus the few live facts the card compares it with.

Everything about the model's quality comes from the card training stored (`metrics`,
`baseline_metrics`, `importance`): nothing is recomputed per page view. The live parts are three
queries whatever the card's size: the active customers (for alerts per week), the latest batch's
drift against this version's training data, and the version's recent champion changes.
A version trained before a figure was stored shows "not recorded for this version" in its place.
"""

from typing import Any

from django.conf import settings
from django.db.models import Q

from core.charts import bar_chart, reliability_chart
from customers.models import Customer
from predictions.ml.features import feature_info
from predictions.models import MODEL_CHANGE_RUN_PREFIX, ModelVersion, ModelVersionChange, PredictionRun

# (key, label, decimals): the figures a validation block and the comparison show.
METRICS = (
    ("roc_auc", "ROC AUC", 3),
    ("pr_auc", "PR AUC", 3),
    ("brier", "Brier score", 4),
    ("log_loss", "Log loss", 4),
    ("lift_at_10pct", "Lift in the top 10 %", 2),
    ("ece", "Calibration error (ECE)", 4),
)
IMPORTANCE_SHOWN = 15
CHANGES_SHOWN = 20
DAYS_PER_WEEK = 7


def figure(value: Any, decimals: int) -> str:
    """A stored figure as the card prints it ("—" when missing)."""
    return "—" if value is None else f"{float(value):.{decimals}f}"


def interval(ci: Any, decimals: int = 3) -> str:
    """A stored [low, high] interval as "0.712–0.801" ("" when not stored)."""
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return ""
    return f"{float(ci[0]):.{decimals}f}–{float(ci[1]):.{decimals}f}"


def percent(value: Any, decimals: int = 1) -> str:
    return "—" if value is None else f"{float(value) * 100:.{decimals}f}%"


def scored_as(version: ModelVersion) -> str:
    """The key of this version's own figures in each validation block ("xgboost", "logistic",
    "rules"): training stores every candidate's figures side by side."""
    return (version.params or {}).get("algorithm") or version.kind


def _metric_cells(figures: dict, *, with_ci: bool) -> list[dict]:
    return [
        {
            "value": figure(figures.get(key), decimals),
            "ci": interval(figures.get(f"{key}_ci")) if with_ci else "",
        }
        for key, _, decimals in METRICS
    ]


def validation_blocks(version: ModelVersion) -> dict | None:
    """Each validation block (a rolling-origin cutoff or a fold) with this version's figures and
    the ROC AUC's 95 % interval where training stored one; None when no block was stored."""
    blocks = (version.metrics or {}).get("blocks")
    if not blocks:
        return None
    name = scored_as(version)
    rows = []
    for block in blocks:
        figures = block.get(name) or {}
        rows.append(
            {
                "block": str(block.get("block", "")).split("T")[0],
                "n": figures.get("n_samples"),
                "positives": figures.get("positives"),
                "cells": _metric_cells(figures, with_ci=True),
            }
        )
    return {
        "headers": [label for _, label, _ in METRICS],
        "rows": rows,
        "pooled": _metric_cells(version.metrics, with_ci=True),
    }


def calibration(version: ModelVersion) -> dict | None:
    bins = (version.metrics or {}).get("calibration_bins")
    if not bins:
        return None
    return {
        "svg": reliability_chart(
            bins=bins, label=f"Reliability of {version.version}: predicted against observed churn"
        ),
        "bins": [
            {
                "range": f"{b['low'] * 100:.0f}–{b['high'] * 100:.0f}%",
                "n": b["n"],
                "predicted": percent(b["mean_predicted"]),
                "observed": percent(b["observed_rate"]),
            }
            for b in bins
        ],
        "ece": figure(version.metrics.get("ece"), 4),
        "max_error": figure(version.metrics.get("max_calibration_error"), 4),
        "method": (version.params or {}).get("calibration"),
    }


def alerts_per_week(row: dict, n_samples: Any, horizon_days: Any, active_customers: int) -> float | None:
    """Customers flagged per week at this threshold on today's book: the share of validated
    customers it flagged, times the active customers now, spread over the horizon (a churner is
    flagged once within it). Equivalently, recall × churners per week ÷ precision."""
    if not n_samples or not horizon_days or "contacted" not in row:
        return None
    return row["contacted"] / n_samples * active_customers * DAYS_PER_WEEK / horizon_days


def threshold_rows(version: ModelVersion, active_customers: int) -> dict | None:
    """The risk bands' thresholds (when stored) then the card's grid: precision, recall, share
    flagged and expected alerts per week."""
    metrics = version.metrics or {}
    table = metrics.get("threshold_table")
    if not table:
        return None
    horizon = (version.training_window or {}).get("horizon_days")
    n_samples = metrics.get("n_samples")
    rows = []
    for row in [*metrics.get("band_thresholds", []), *table]:
        weekly = alerts_per_week(row, n_samples, horizon, active_customers)
        rows.append(
            {
                "label": f"{row['band']} risk band" if row.get("band") else "",
                "threshold": percent(row["threshold"]),
                "precision": percent(row.get("precision")),
                "recall": percent(row.get("recall")),
                "flagged": percent(row["contacted"] / n_samples) if n_samples and "contacted" in row else "—",
                "per_week": "—" if weekly is None else f"{weekly:.1f}",
            }
        )
    return {
        "rows": rows,
        "bands_recorded": bool(metrics.get("band_thresholds")),
        "horizon_days": horizon,
        "active_customers": active_customers,
        "n_samples": n_samples,
    }


def importance(version: ModelVersion) -> dict | None:
    shares = version.importance or {}
    if not shares:
        return None
    total = sum(shares.values()) or 1.0
    top = sorted(shares.items(), key=lambda item: -item[1])[:IMPORTANCE_SHOWN]
    rows = [(feature_info(name).label, 100 * value / total) for name, value in top]
    return {
        "svg": bar_chart(
            labels=[label for label, _ in rows],
            values=[share for _, share in rows],
            unit="%",
            label=f"Feature importance of {version.version} (share of mean |SHAP|)",
        ),
        "rows": [{"feature": label, "share": f"{share:.1f}%"} for label, share in rows],
        "shown": len(rows),
        "total": len(shares),
    }


def drift(version: ModelVersion) -> dict | None:
    """PSI per feature of the latest whole-book run this version scored (a daily batch, or the
    re-score after a person changed the champion), against its training data."""
    whole_book = Q(trigger=PredictionRun.Trigger.BATCH) | Q(run_key__startswith=MODEL_CHANGE_RUN_PREFIX)
    run = (
        PredictionRun.objects.filter(whole_book, model_version=version, status=PredictionRun.Status.COMPLETED)
        .exclude(drift={})
        .order_by("-started_at", "-id")
        .values("run_key", "started_at", "drift")
        .first()
    )
    if run is None:
        return None
    moderate, major = settings.DRIFT_MODERATE_PSI, settings.DRIFT_MAJOR_PSI
    rows = [
        {
            "feature": feature_info(name).label,
            "psi": f"{value:.4f}",
            "status": "major" if value >= major else "moderate" if value >= moderate else "stable",
        }
        for name, value in sorted(run["drift"].items(), key=lambda item: -item[1])
    ]
    return {
        "run_key": run["run_key"],
        "started_at": run["started_at"],
        "rows": rows,
        "moderate": moderate,
        "major": major,
    }


def comparison(version: ModelVersion) -> dict | None:
    """This version against the logistic baseline and the rules, measured on the same rows."""
    metrics = version.metrics or {}
    if metrics.get("roc_auc") is None:
        return None
    columns = [("This model", metrics)]
    if version.kind != ModelVersion.Kind.LOGISTIC and version.baseline_metrics:
        columns.append(("Logistic baseline", version.baseline_metrics))
    if version.kind != ModelVersion.Kind.RULES and metrics.get("rules_reference"):
        columns.append(("Rules baseline", metrics["rules_reference"]))
    rows = [
        {
            "metric": label,
            "cells": [
                {"value": figure(figures.get(key), decimals), "ci": interval(figures.get(f"{key}_ci"))}
                for _, figures in columns
            ],
        }
        for key, label, decimals in METRICS
    ]
    return {"headers": [title for title, _ in columns], "rows": rows, "n": metrics.get("n_samples")}


def champion_changes(version: ModelVersion) -> list[ModelVersionChange]:
    """The latest champion changes that made or replaced this version."""
    return list(
        ModelVersionChange.objects.filter(Q(version=version) | Q(previous=version))
        .select_related("version", "previous", "changed_by")
        .defer("version__artifact", "previous__artifact")
        .order_by("-changed_at", "-id")[:CHANGES_SHOWN]
    )


def model_card(version: ModelVersion) -> dict:
    """Everything the model card page shows about `version` (see the module docstring)."""
    changes = champion_changes(version)
    made_champion = next((change for change in changes if change.version_id == version.pk), None)
    window = version.training_window or {}
    metrics = version.metrics or {}
    return {
        "facts": {
            "protocol": window.get("protocol") or metrics.get("protocol"),
            "horizon_days": window.get("horizon_days"),
            "data_window": (window.get("start"), window.get("end")),
            "train_samples": metrics.get("train_samples"),
            "validated_samples": metrics.get("n_samples"),
            "positive_rate": percent(metrics.get("positive_rate")) if "positive_rate" in metrics else None,
            "features": len(version.feature_names or []),
            "algorithm": scored_as(version),
            "calibration": (version.params or {}).get("calibration"),
        },
        "blocks": validation_blocks(version),
        "calibration": calibration(version),
        "thresholds": threshold_rows(version, Customer.objects.filter(is_active=True).count()),
        "importance": importance(version),
        "drift": drift(version),
        "comparison": comparison(version),
        "changes": changes,
        "roll_back_to": made_champion.previous if made_champion and version.status == "champion" else None,
    }
