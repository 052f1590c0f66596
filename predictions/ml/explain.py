"""Per-customer churn causes from XGBoost SHAP contributions.

A contribution is the feature's additive share of the raw model's log-odds for that row
(`pred_contribs=True`, exact tree SHAP). A cause is a name from predictions.causes.CAUSES; every
feature maps to one (see `features.FEATURES`), context features (plan, MRR, …) to none.

For each row: only features with a positive contribution (pushing risk up) count; the positive
contributions of all features form the "positive mass"; the features of one cause are merged
(their contributions summed) and the cause's `impact` is its share of the positive mass. The
strongest feature of the cause gives its label, value and category. At most `top_k` causes,
strongest first, one per cause name; context features add to the mass but are never listed.

A feature is named as a cause only when the customer's value is on the risky side of retained
customers' median (`listable`: fewer sessions than they have, more tickets…), in the direction
its description declares. A model may still push risk up through a value on the healthy side —
correlated features offset each other (a logistic model gives "sessions in 90 days" a positive
weight because "sessions in 30 days" carries a larger negative one) — and "Sessions in the last
90 days: 63 — retained customers: 28" is no reason a CSM can act on. Such contributions stay in
the mass, like context features, but are never listed.

Cost policy (`explain_batch`): exact tree SHAP costs many times a prediction per row, so every
row first gets XGBoost's cheap approximation (`approx_contribs=True`, Saabas-style: the path
attribution only), and exact SHAP is computed for the rows at or above a probability `floor`
(the ones a CSM reads first), asked for by id, or whose approximate top three is a near tie
(where the approximation would most often name another cause). See ADR 0006 for the figures.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from predictions.ml.features import CONTEXT, feature_info

if TYPE_CHECKING:  # for the annotation only: training imports this module
    from predictions.ml.training import TrainedModel


def value_text(feature: str, value: float, reference: float | None) -> str:
    """e.g. "Days since last login: 23 days — retained customers: 3 days"."""
    info = feature_info(feature)
    text = f"{info.label}: {info.format(value)}"
    if reference is not None and np.isfinite(reference):
        text += f" — retained customers: {info.format(reference)}"
    return text


def listable(values: np.ndarray, feature_names: list[str], healthy_reference: dict[str, float] | None) -> np.ndarray:
    """Rows × features: may this value be named as a cause? Yes when it lies on the risky side of
    retained customers' median (`FeatureInfo.higher_is_riskier`), or when either is unknown."""
    values = np.asarray(values, dtype=float)
    healthy = healthy_reference or {}
    reference = np.array([healthy.get(name, np.nan) for name in feature_names], dtype=float)
    higher_is_riskier = np.array([feature_info(name).higher_is_riskier for name in feature_names])
    gap = values - reference
    with np.errstate(invalid="ignore"):
        risky = np.where(higher_is_riskier, gap > 0, gap < 0)
    return risky | np.isnan(gap)


@functools.lru_cache(maxsize=16)  # a model's layout, asked for every real-time score
def _cause_columns(feature_names: tuple[str, ...]) -> tuple[list[str], list[np.ndarray]]:
    """The causes the features report (sorted) and, per cause, the indexes of its features."""
    infos = [feature_info(f) for f in feature_names]
    causes = sorted({i.cause for i in infos if i.cause != CONTEXT})
    return causes, [np.array([k for k, i in enumerate(infos) if i.cause == cause]) for cause in causes]


def cause_shares(
    contribs: np.ndarray, feature_names: list[str], listed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per row and cause: its share of the positive mass, and the index of its strongest feature.
    `listed` (rows × features, see `listable`): the contributions a cause may count; all the
    positive ones make up the mass."""
    contribs = np.asarray(contribs, dtype=float)[:, : len(feature_names)]
    n = contribs.shape[0]
    positive = np.maximum(np.nan_to_num(contribs), 0.0)
    mass = positive.sum(axis=1)
    if listed is not None:
        positive = positive * listed
    causes, columns = _cause_columns(tuple(feature_names))
    # Per cause: summed positive contribution and its strongest feature (vectorised over rows).
    cause_mass = np.zeros((n, len(causes)))
    strongest = np.zeros((n, len(causes)), dtype=int)
    for j, cols in enumerate(columns):
        block = positive[:, cols]
        cause_mass[:, j] = block.sum(axis=1)
        strongest[:, j] = cols[np.argmax(block, axis=1)]
    share = np.divide(cause_mass, mass[:, None], out=np.zeros_like(cause_mass), where=mass[:, None] > 0)
    return share, strongest, causes


def causes_from_contributions(
    contribs: np.ndarray,
    X: pd.DataFrame | np.ndarray,
    feature_names: list[str],
    healthy_reference: dict[str, float] | None = None,
    top_k: int = 3,
) -> list[list[dict]]:
    """Cause dicts per row of `X` from a (rows × features [+ bias]) contribution matrix."""
    n = np.shape(contribs)[0]
    if n == 0:
        return []
    healthy = healthy_reference or {}
    # A matrix already in `feature_names` order (one real-time row) is used as it is.
    values = X if isinstance(X, np.ndarray) else X.reindex(columns=feature_names, fill_value=0.0).to_numpy(dtype=float)
    infos = [feature_info(f) for f in feature_names]
    share, strongest, causes = cause_shares(contribs, feature_names, listable(values, feature_names, healthy))
    order = np.argsort(-share, axis=1, kind="stable")[:, :top_k]
    out: list[list[dict]] = []
    for r in range(n):  # formatting only: the numbers above are computed on whole arrays
        row = []
        for j in order[r]:
            impact = round(float(share[r, j]), 4)
            if impact <= 0:
                break
            k = strongest[r, j]
            name, info = feature_names[k], infos[k]
            row.append(
                {
                    "cause": causes[j],
                    "factor": info.label,
                    "feature": name,
                    "impact": impact,
                    "direction": "increases",
                    "category": info.category,
                    "value": value_text(name, values[r, k], healthy.get(name)),
                }
            )
        out.append(row)
    return out


def explain_exact(model: TrainedModel, X: pd.DataFrame, top_k: int = 3) -> list[list[dict]]:
    """Top causes per row from exact tree SHAP for every row (the reference `explain_batch` is
    measured against)."""
    return causes_from_contributions(model.contributions(X), X, model.feature_names, model.healthy_reference, top_k)


def explain_batch(
    model: TrainedModel,
    X: pd.DataFrame,
    probabilities: np.ndarray | None = None,
    floor: float = 0.3,
    top_k: int = 3,
    exact_for: Iterable | None = None,
    margin: float = 0.01,
) -> list[list[dict]]:
    """Causes for every row of `X`: the cheap approximation first, then exact tree SHAP where
    `exact_rows` says (see the module docstring and ADR 0006). A linear model is always exact."""
    if len(X) == 0:
        return []
    if model.booster is None:
        return causes_from_contributions(model.contributions(X), X, model.feature_names, model.healthy_reference, top_k)
    if probabilities is None:
        probabilities = model.predict_proba(X)
    contribs = model.contributions(X, approx=True)
    values = X.reindex(columns=model.feature_names, fill_value=0.0).to_numpy(dtype=float)
    listed = listable(values, model.feature_names, model.healthy_reference)
    exact = exact_rows(
        contribs, model.feature_names, probabilities, floor=floor, top_k=top_k, margin=margin, listed=listed
    )
    if exact_for is not None:
        exact |= X.index.isin(list(exact_for))
    if exact.any():
        contribs[exact] = model.contributions(X.loc[exact])
    return causes_from_contributions(contribs, X, model.feature_names, model.healthy_reference, top_k)


def exact_rows(
    approx_contribs: np.ndarray,
    feature_names: list[str],
    probabilities: np.ndarray,
    *,
    floor: float = 0.3,
    top_k: int = 3,
    margin: float = 0.01,
    listed: np.ndarray | None = None,
) -> np.ndarray:
    """The rows to explain exactly: those a CSM reads first (probability ≥ `floor`) and those whose
    approximate top `top_k` is a near tie — its last cause leads the next by less than `margin`
    of the positive mass, where the approximation most often lists another cause. `listed`: as
    for `cause_shares`."""
    exact = np.asarray(probabilities, dtype=float) >= floor
    share, _, causes = cause_shares(approx_contribs, feature_names, listed)
    if len(causes) > top_k:
        ranked = -np.sort(-share, axis=1)
        exact |= ranked[:, top_k - 1] - ranked[:, top_k] < margin
    return exact


def top_causes_agreement(a: list[list[dict]], b: list[list[dict]]) -> float:
    """Mean Jaccard overlap of the cause names of two explanations of the same rows."""
    scores = []
    for x, y in zip(a, b, strict=True):
        sx, sy = {c["cause"] for c in x}, {c["cause"] for c in y}
        scores.append(1.0 if not sx and not sy else len(sx & sy) / len(sx | sy))
    return float(np.mean(scores)) if scores else 1.0
