"""Evaluation helpers for churn probabilities (scikit-learn where it has the metric).

Expected value assumptions (`threshold_table`)
----------------------------------------------
A CSM contacts every customer whose probability is ≥ the threshold. Each contact costs
`contact_cost` (default 50, in the MRR currency). A contacted customer who would have churned is
saved with probability `save_rate` (default 0.3) and is then worth one year of revenue
(`mrr * 12`). Contacting a customer who would not have churned gains nothing. So
expected_value = Σ_true positives mrr·12·save_rate − contact_cost · contacted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

DEFAULT_SAVE_RATE = 0.3
DEFAULT_CONTACT_COST = 50.0
DEFAULT_THRESHOLD = 0.5
THRESHOLDS = tuple(round(t, 1) for t in np.arange(0.1, 0.95, 0.1))


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(y, dtype=float).ravel(), np.clip(np.asarray(p, dtype=float).ravel(), 0.0, 1.0)


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < y.sum() < y.size


def roc_auc(y, p) -> float | None:
    y, p = _arrays(y, p)
    return float(roc_auc_score(y, p)) if _both_classes(y) else None


def pr_auc(y, p) -> float | None:
    y, p = _arrays(y, p)
    return float(average_precision_score(y, p)) if _both_classes(y) else None


def lift_at(y, p, fraction: float = 0.1) -> float | None:
    """Churn rate among the top `fraction` by probability divided by the overall churn rate."""
    y, p = _arrays(y, p)
    if y.size == 0 or y.mean() == 0:
        return None
    k = max(1, math.ceil(fraction * y.size))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def calibration_bins(y, p, bins: int = 10) -> list[dict]:
    """Equal-width probability bins: count, mean predicted, observed rate (non-empty bins only)."""
    y, p = _arrays(y, p)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out.append(
                {
                    "bin": b,
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "n": int(sel.sum()),
                    "mean_predicted": float(p[sel].mean()),
                    "observed_rate": float(y[sel].mean()),
                }
            )
    return out


def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error: bin-size-weighted mean |mean predicted − observed rate|."""
    y, _ = _arrays(y, p)
    if y.size == 0:
        return 0.0
    rows = calibration_bins(y, p, bins)
    return float(sum(r["n"] * abs(r["mean_predicted"] - r["observed_rate"]) for r in rows) / y.size)


def max_calibration_error(y, p, bins: int = 10) -> float:
    rows = calibration_bins(y, p, bins)
    return float(max((abs(r["mean_predicted"] - r["observed_rate"]) for r in rows), default=0.0))


def threshold_table(
    y,
    p,
    mrr=None,
    thresholds=THRESHOLDS,
    save_rate: float = DEFAULT_SAVE_RATE,
    contact_cost: float = DEFAULT_CONTACT_COST,
) -> list[dict]:
    """Precision, recall, F1 and expected value (see the module docstring) per threshold."""
    y, p = _arrays(y, p)
    mrr = np.zeros_like(p) if mrr is None else np.nan_to_num(np.asarray(mrr, dtype=float).ravel())
    positives = y.sum()
    rows = []
    for t in thresholds:
        contacted = p >= t
        tp = float((contacted & (y == 1)).sum())
        n_contacted = int(contacted.sum())
        precision = tp / n_contacted if n_contacted else 0.0
        recall = tp / positives if positives else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        saved = float((mrr * 12 * save_rate)[contacted & (y == 1)].sum())
        rows.append(
            {
                "threshold": float(t),
                "contacted": n_contacted,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "expected_value": saved - contact_cost * n_contacted,
            }
        )
    return rows


def performance_by_segment(y, p, segment, threshold: float = DEFAULT_THRESHOLD, min_size: int = 30) -> dict[str, dict]:
    """ROC AUC (None with one class), precision, recall and n per segment; segments with fewer
    than `min_size` rows are skipped."""
    y, p = _arrays(y, p)
    seg = pd.Series(np.asarray(segment)).astype(str).to_numpy()
    out = {}
    for name in sorted(set(seg)):
        sel = seg == name
        if sel.sum() < min_size:
            continue
        ys, ps = y[sel], p[sel]
        flagged = ps >= threshold
        tp = float((flagged & (ys == 1)).sum())
        out[name] = {
            "n": int(sel.sum()),
            "positive_rate": float(ys.mean()),
            "roc_auc": roc_auc(ys, ps),
            "precision": float(tp / flagged.sum()) if flagged.sum() else 0.0,
            "recall": float(tp / ys.sum()) if ys.sum() else 0.0,
        }
    return out


def evaluate(
    y,
    p,
    *,
    mrr=None,
    segment=None,
    save_rate: float = DEFAULT_SAVE_RATE,
    contact_cost: float = DEFAULT_CONTACT_COST,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """Every metric the model card shows, as plain JSON-serialisable values."""
    y, p = _arrays(y, p)
    both = _both_classes(y)
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "brier": float(brier_score_loss(y, p)) if y.size else None,
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])) if both else None,
        "lift_at_10pct": lift_at(y, p, 0.1),
        "ece": ece(y, p),
        "max_calibration_error": max_calibration_error(y, p),
        "calibration_bins": calibration_bins(y, p),
        "threshold_table": threshold_table(y, p, mrr, save_rate=save_rate, contact_cost=contact_cost),
        "performance_by_segment": performance_by_segment(y, p, segment, threshold) if segment is not None else {},
        "n_samples": int(y.size),
        "positive_rate": float(y.mean()) if y.size else 0.0,
        "assumptions": {"save_rate": save_rate, "contact_cost": contact_cost, "segment_threshold": threshold},
    }


HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "lift_at_10pct", "ece", "n_samples")


def headline(y, p) -> dict:
    """The figures a validation block or a backtest row shows: `HEADLINE` plus the positives."""
    m = evaluate(y, p)
    return {k: m[k] for k in HEADLINE} | {"positives": int(np.asarray(y).sum())}


def delong_auc_ci(y, p, level: float = 0.95) -> list[float] | None:
    """A normal interval of the ROC AUC from DeLong's variance (midranks, O(n log n)): what each
    validation block stores, where a bootstrap per block and candidate would cost training
    seconds per block on a large book for the same answer within a few thousandths."""
    y, p = _arrays(y, p)
    if not _both_classes(y):
        return None
    positives, negatives = p[y == 1], p[y == 0]
    m, n = positives.size, negatives.size
    combined = rankdata(np.concatenate([positives, negatives]))
    v10 = (combined[:m] - rankdata(positives)) / n  # per positive: share of negatives ranked below
    v01 = 1 - (combined[m:] - rankdata(negatives)) / m  # per negative: share of positives ranked above
    auc = float(v10.mean())
    variance = (v10.var(ddof=1) if m > 1 else 0.0) / m + (v01.var(ddof=1) if n > 1 else 0.0) / n
    half = float(norm.ppf(1 - (1 - level) / 2) * np.sqrt(variance))
    return [max(0.0, auc - half), min(1.0, auc + half)]


def bootstrap_auc_ci(y, p, n: int = 500, level: float = 0.95, seed: int = 0) -> list[float] | None:
    """A percentile bootstrap interval of the ROC AUC (rows resampled with replacement).

    Each resample's AUC is the Mann–Whitney statistic on the rows' draw counts (ties count half,
    as in `roc_auc_score`): the rows are sorted by score once, so a resample is a few numpy
    passes instead of a full `roc_auc_score` with its input checks, which made the interval most
    of a training's time."""
    y, p = _arrays(y, p)
    if not _both_classes(y):
        return None
    rng = np.random.default_rng(seed)
    order = np.argsort(p, kind="stable")
    y, p = y[order], p[order]
    # Rows of equal score form one group (contiguous once sorted); groups in ascending score.
    group = np.concatenate([[0], np.cumsum(p[1:] != p[:-1])])
    groups = int(group[-1]) + 1
    values = []
    for _ in range(n):
        drawn = np.bincount(rng.integers(0, y.size, y.size), minlength=y.size)
        positives = np.bincount(group, weights=drawn * y, minlength=groups)
        negatives = np.bincount(group, weights=drawn * (1.0 - y), minlength=groups)
        total_positives, total_negatives = positives.sum(), negatives.sum()
        if total_positives == 0 or total_negatives == 0:
            continue
        below = np.cumsum(negatives) - negatives  # negatives scored lower than each group
        values.append(float(positives @ (below + 0.5 * negatives)) / (total_positives * total_negatives))
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(low), float(high)]
