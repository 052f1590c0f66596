"""The model registry: train, register, promote and load churn models."""

import datetime as dt
import threading

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone
from sklearn.metrics import roc_auc_score

from predictions.data import load_tables
from predictions.ml import rules
from predictions.ml.training import NotEnoughLabels, TrainedModel, build_training_set, train
from predictions.models import ModelVersion
from predictions.selectors import champion, default_as_of

RULES_VERSION = "rules-baseline-1"
_loaded: dict[str, TrainedModel] = {}
_lock = threading.Lock()


def loaded_model(version: ModelVersion) -> TrainedModel | None:
    """The trained model of `version`, deserialised once per process and kept in memory."""
    if version.kind == ModelVersion.Kind.RULES:
        return None
    with _lock:
        model = _loaded.get(version.version)
        if model is None:
            artifact = ModelVersion.objects.values_list("artifact", flat=True).get(pk=version.pk)
            model = TrainedModel.from_bytes(bytes(artifact))
            _loaded.clear()  # keep one model in memory: the champion changes rarely
            _loaded[version.version] = model
        return model


def rules_version() -> ModelVersion:
    """The transparent rules baseline, registered once; used until enough churn labels exist."""
    now = timezone.now()
    version, _ = ModelVersion.objects.get_or_create(
        version=RULES_VERSION,
        defaults={
            "kind": ModelVersion.Kind.RULES,
            "trained_at": now,
            "as_of": now,
            "status_reason": "Rules baseline: used until enough churned customers exist to train a model.",
        },
    )
    return version


def model_promote(candidate: ModelVersion, reason: str) -> None:
    """Make `candidate` the champion (retiring the current one), recording why."""
    ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).update(status=ModelVersion.Status.RETIRED)
    candidate.status, candidate.status_reason = ModelVersion.Status.CHAMPION, reason
    candidate.save(update_fields=["status", "status_reason"])


def _auc_on(model: TrainedModel, x: pd.DataFrame, y: pd.Series) -> float | None:
    if y.nunique() < 2:
        return None
    return float(roc_auc_score(y, model.predict_proba(x)))


@transaction.atomic
def model_train(*, as_of: dt.datetime | None = None, seed: int = 0, min_positives: int = 50) -> ModelVersion:
    """Train on everything known up to `as_of` (default: now, or the data's end when it ended
    before today), register the version and promote it if it wins.

    A new model becomes champion when there is none, when the champion is the rules baseline,
    or when it beats the champion's ROC AUC on the new model's own validation window (both
    scored on the same rows). Otherwise it stays a candidate, with the reason recorded.
    """
    as_of = as_of or default_as_of(timezone.now())[0]
    tables = load_tables()
    try:
        trained = train(tables, pd.Timestamp(as_of), seed=seed, min_positives=min_positives)
    except NotEnoughLabels as exc:
        version = rules_version()
        if champion() is None:
            model_promote(version, f"Cold start: {exc}")
        return version

    count = ModelVersion.objects.exclude(kind=ModelVersion.Kind.RULES).count()
    kind = ModelVersion.Kind(trained.algorithm)
    candidate = ModelVersion.objects.create(
        version=f"{'xgb' if kind == ModelVersion.Kind.XGBOOST else 'lr'}-{as_of:%Y%m%d}-{count + 1}",
        kind=kind,
        trained_at=timezone.now(),
        as_of=as_of,
        feature_names=list(trained.feature_names),
        params=trained.params,
        training_window=trained.training_window,
        metrics=trained.metrics,
        baseline_metrics=trained.baseline_metrics,
        importance=trained.importance,
        artifact=trained.to_bytes(),
    )
    current = champion()
    if current is None or current.kind == ModelVersion.Kind.RULES:
        model_promote(candidate, "First trained model: replaces the rules baseline.")
        return candidate

    cutoffs = [pd.Timestamp(c) for c in trained.training_window.get("validation_cutoffs", [])]
    x_val, y_val, _ = build_training_set(tables, cutoffs, trained.training_window.get("horizon_days", 90))
    new_auc, old_auc = _auc_on(trained, x_val, y_val), _auc_on(loaded_model(current), x_val, y_val)
    if new_auc is not None and (old_auc is None or new_auc > old_auc):
        model_promote(
            candidate, f"ROC AUC {new_auc:.4f} beats {current.version} ({old_auc or 0:.4f}) on the same window."
        )
    else:
        candidate.status_reason = (
            f"Kept as candidate: ROC AUC {new_auc or 0:.4f} does not beat {current.version} "
            f"({old_auc or 0:.4f}) on the same validation window."
        )
        candidate.save(update_fields=["status_reason"])
    return candidate


def probabilities(version: ModelVersion, features: pd.DataFrame, weights: dict[str, float] | None = None) -> np.ndarray:
    """Churn probabilities for `features` from `version` (the rules baseline, with the health
    `weights`, when not trained)."""
    model = loaded_model(version)
    return rules.rules_probability(features, weights) if model is None else model.predict_proba(features)
