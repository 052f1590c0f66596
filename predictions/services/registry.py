"""The model registry: train, register, promote and load churn models.

Every change of champion goes through `model_promote` and leaves a `ModelVersionChange` row:
training's own promotions (nobody's), a manager's explicit promotion and a roll back to the
version that was champion before.
"""

import datetime as dt
import threading

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.enqueue import enqueue_on_commit
from core.exceptions import ConflictError
from predictions.data import load_tables
from predictions.ml import rules
from predictions.ml.training import NotEnoughLabels, TrainedModel, same_rows_auc, train
from predictions.models import ModelVersion, ModelVersionChange
from predictions.selectors import champion, champion_risk_bands, default_as_of, previous_champion

RULES_VERSION = "rules-baseline-1"
_loaded: dict[tuple[int, str], TrainedModel] = {}
_lock = threading.Lock()
# A challenger must beat the champion's ROC AUC on the same rows by more than this: two trainings
# on the same data differ by float noise, and a tie keeps the model the CSMs already know.
CHALLENGER_MARGIN = 0.001


def loaded_model(version: ModelVersion) -> TrainedModel | None:
    """The trained model of `version`, deserialised once per process and kept in memory."""
    if version.kind == ModelVersion.Kind.RULES:
        return None
    with _lock:
        # By row and name: a name can come back on another database (a restore, a test).
        key = (version.pk, version.version)
        model = _loaded.get(key)
        if model is None:
            artifact = ModelVersion.objects.values_list("artifact", flat=True).get(pk=version.pk)
            if artifact is None:
                raise ValueError(f"model version {version.version} has no stored model (retired and dropped)")
            model = TrainedModel.from_bytes(bytes(artifact))
            _loaded.clear()  # keep one model in memory: the champion changes rarely
            _loaded[key] = model
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


@transaction.atomic
def model_promote(
    candidate: ModelVersion,
    reason: str,
    *,
    by: AbstractBaseUser | None = None,
    action: str = ModelVersionChange.Action.PROMOTED,
) -> ModelVersionChange:
    """Make `candidate` the champion (retiring the current one), recording why, by whom (None:
    training's own rule) and what it replaced."""
    # Locked: two promotions at once would each retire the other's champion.
    current = ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.CHAMPION).first()
    if current is not None and current.pk != candidate.pk:
        ModelVersion.objects.filter(pk=current.pk).update(status=ModelVersion.Status.RETIRED)
    candidate.status, candidate.status_reason = ModelVersion.Status.CHAMPION, reason
    candidate.save(update_fields=["status", "status_reason"])
    champion_risk_bands.forget()
    return ModelVersionChange.objects.create(
        action=action,
        version=candidate,
        previous=current if current is not None and current.pk != candidate.pk else None,
        changed_by_id=by.pk if by is not None else None,
        changed_at=timezone.now(),
        reason=reason,
    )


def _rescore_book_after_commit(change: ModelVersionChange) -> None:
    """The book's scores come from the champion and its risk bands: once a person changes it, the
    whole book is scored again (after commit, on the scoring queue) rather than mixing the old
    model's probabilities with the new model's bands until tomorrow's batch."""
    enqueue_on_commit("predictions.tasks.rescore_book_after_model_change", change.pk)


@transaction.atomic
def model_version_promote(*, version_id: int, by: AbstractBaseUser, note: str) -> ModelVersionChange:
    """A manager makes a version champion by hand (a candidate the automatic rule kept back, or a
    retired one); audited, and the book is re-scored with it."""
    version = ModelVersion.objects.select_for_update().defer("artifact").get(pk=version_id)
    if version.status == ModelVersion.Status.CHAMPION:
        raise ConflictError(f"{version.version} is already the champion.")
    if version.kind != ModelVersion.Kind.RULES and not _has_artifact(version):
        raise ConflictError(f"{version.version} has no stored model to score with.")
    who = by.get_username()
    change = model_promote(version, f"Promoted by {who}: {note}", by=by)
    _rescore_book_after_commit(change)
    return change


@transaction.atomic
def model_version_roll_back(*, by: AbstractBaseUser, note: str) -> ModelVersionChange:
    """A manager puts back the version that was champion before the current one (as the latest
    change recorded it); the current one is retired, saying who rolled it back and why."""
    current = ModelVersion.objects.select_for_update().defer("artifact").filter(status="champion").first()
    if current is None:
        raise ConflictError("There is no champion to roll back.")
    previous = previous_champion(current)
    if previous is None:
        raise ConflictError(
            f"No earlier champion is recorded for {current.version}; promote an earlier version from its page."
        )
    who = by.get_username()
    change = model_promote(
        previous,
        f"Restored by {who}, rolling back {current.version}: {note}",
        by=by,
        action=ModelVersionChange.Action.ROLLED_BACK,
    )
    current.status_reason = f"Rolled back by {who} to {previous.version}: {note}"
    current.save(update_fields=["status_reason"])
    _rescore_book_after_commit(change)
    return change


def _has_artifact(version: ModelVersion) -> bool:
    return ModelVersion.objects.filter(pk=version.pk, artifact__isnull=False).exclude(artifact=b"").exists()


@transaction.atomic
def model_train(*, as_of: dt.datetime | None = None, seed: int = 0, min_positives: int = 50) -> ModelVersion:
    """Train on everything known up to `as_of` (default: now, or the data's end when it ended
    before today), register the version and promote it if it wins.

    A new model becomes champion only when, on the same out-of-sample rows, it ranks customers
    at least as well as the logistic baseline, better than the rules, and better than the
    current trained champion. Otherwise it stays a candidate, with the reason recorded (and
    when the rules win and nothing else is champion, the rules are).
    """
    as_of = as_of or default_as_of(timezone.now())[0]
    tables = load_tables()
    try:
        bands = {
            "top_share": settings.RISK_HIGH_TOP_SHARE,
            "high_multiple": settings.RISK_HIGH_BASE_MULTIPLE,
            "medium_multiple": settings.RISK_MEDIUM_BASE_MULTIPLE,
        }
        trained = train(tables, pd.Timestamp(as_of), seed=seed, min_positives=min_positives, bands=bands)
    except NotEnoughLabels as exc:
        version = rules_version()
        if champion() is None:
            model_promote(version, f"Cold start: {exc}")
        return version

    # The rules were measured on the same blocks as the candidate: their card shows that measurement
    # (the latest one), so a book whose rules stay champion still has a model card with figures,
    # and bands that are ranks on this book (their raw score is not a calibrated probability).
    ModelVersion.objects.filter(pk=rules_version().pk).update(
        metrics=trained.rules_metrics,
        baseline_metrics=trained.baseline_metrics,
        training_window=trained.training_window,
        params={"risk_thresholds": trained.rules_risk_thresholds},
    )
    champion_risk_bands.forget()
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
        metrics=trained.metrics | {"rules_reference": trained.rules_metrics},
        baseline_metrics=trained.baseline_metrics,
        importance=trained.importance,
        artifact=trained.to_bytes(),
    )
    auc = trained.metrics.get("roc_auc") or 0.0
    base = trained.baseline_metrics.get("roc_auc") or 0.0
    rules_auc = trained.rules_metrics.get("roc_auc") or 0.0
    protocol = trained.training_window.get("protocol", "")
    current = champion()
    if auc < base or auc <= rules_auc:
        loser = "the logistic baseline" if auc < base else "the rules"
        candidate.status_reason = (
            f"Kept as candidate: ROC AUC {auc:.4f} does not beat {loser} (logistic {base:.4f}, rules "
            f"{rules_auc:.4f}) on the same {protocol} blocks."
        )
        candidate.save(update_fields=["status_reason"])
        if current is None:
            model_promote(
                rules_version(), f"The rules rank better than the trained model ({rules_auc:.4f} vs {auc:.4f})."
            )
        return candidate
    versus = f"logistic {base:.4f}, rules {rules_auc:.4f} on the same {protocol} blocks"
    if current is None or current.kind == ModelVersion.Kind.RULES:
        model_promote(candidate, f"ROC AUC {auc:.4f} beats the rules ({versus}).")
        return candidate

    # The champion against the challenger on the challenger's validation rows, each with its own
    # features (both final models; either may have seen some of these rows in training).
    new_auc = same_rows_auc(trained, tables, trained.training_window)
    current_model = loaded_model(current)
    old_auc = same_rows_auc(current_model, tables, trained.training_window) if current_model else None
    if new_auc is not None and (old_auc is None or new_auc > old_auc + CHALLENGER_MARGIN):
        model_promote(
            candidate,
            f"ROC AUC {new_auc:.4f} beats {current.version} ({old_auc or 0:.4f}) on the same window; {versus}.",
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
