"""A transparent rules baseline: the health score and the cold-start churn probability.

Input: a frame from `features.build_features` (optionally joined with `features.usage_features`
for the `fu_<key>` adoption counters). Every component is 0–100 (100 = healthy) and uses
fixed, documented curves, so a customer's score never depends on the other customers:

* engagement = 40 % sessions in 30 days (1 − e^(−sessions/8)) + 40 % recency
  (e^(−days since last login / 14)) + 20 % trend (min(1, usage_ratio_30d));
* usage = adoption: actions per session (1 − e^(−actions/3)); when `fu_<key>` columns are
  present, 60 % the share of usage keys in use (> 0) + 40 % actions per session;
* support = e^(−(open tickets + 1.5 · high/urgent tickets in 90 d + 0.5 · tickets in 30 d) / 3);
* nps = 10 × latest score (50 when never answered), minus 5 per point the score fell;
* billing = e^(−(0.7 · failed payments in 30 d + 0.7 · in 90 d + 1 · downgraded in 90 d));
* tenure = 1 − e^(−account age / 90 days) (new accounts are riskier).

`health_score` = weighted mean of the components with `DEFAULT_WEIGHTS` (configurable), rounded
to an int. `rules_probability` = logistic(2.2 − 0.061 · unrounded health): ≈ 0.02 at 100, 0.3 at
50, 0.9 at 0. More risk signals lower a component, so they never lower the probability.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from predictions.ml.features import (
    DECLINING_USAGE,
    LOW_ADOPTION,
    LOW_ENGAGEMENT,
    ONBOARDING,
    PAYMENT,
    SATISFACTION,
    SUPPORT,
    USAGE_PREFIX,
    feature_info,
)

COMPONENTS = ("usage", "engagement", "support", "nps", "billing", "tenure")
DEFAULT_WEIGHTS: dict[str, float] = {
    "usage": 0.15,
    "engagement": 0.30,
    "support": 0.15,
    "nps": 0.10,
    "billing": 0.15,
    "tenure": 0.15,
}
INTERCEPT, SLOPE = 2.2, 0.061
CAUSE_BELOW = 70.0  # a component under this is reported as a cause
# What a healthy account looks like, shown next to the customer's value (no training data here).
HEALTHY_REFERENCE: dict[str, float] = {
    "days_since_last_session": 3.0,
    "usage_ratio_30d": 1.0,
    "actions_per_session_30d": 3.0,
    "open_tickets": 0.0,
    "urgent_tickets_90d": 0.0,
    "nps_latest": 8.0,
    "payment_failures_90d": 0.0,
    "tenure_days": 180.0,
    "sessions_30d": 8.0,
}


# `features` is a frame, or (one real-time customer) a dict of feature name → 1-element array.
type Features = pd.DataFrame | Mapping[str, np.ndarray]


def _names(features: Features) -> list[str]:
    return list(features.columns) if isinstance(features, pd.DataFrame) else list(features)


def _rows(features: Features) -> int:
    if isinstance(features, pd.DataFrame):
        return len(features)
    return len(next(iter(features.values()))) if features else 0


def _col(features: Features, name: str, default: float = 0.0) -> np.ndarray:
    if name in features:
        values = np.asarray(features[name], dtype=np.float64)
        # Features are finite as built (a joined usage column may be NaN): skip the copy then.
        return values if np.isfinite(values).all() else np.nan_to_num(values, nan=default)
    return np.full(_rows(features), default)


def _sat(x: np.ndarray, scale: float) -> np.ndarray:
    return 1.0 - np.exp(-np.maximum(x, 0.0) / scale)


def _components(features: Features) -> dict[str, np.ndarray]:
    f = features
    recency = np.exp(-np.maximum(_col(f, "days_since_last_session", 365.0), 0.0) / 14.0)
    trend = np.clip(_col(f, "usage_ratio_30d", 1.0), 0.0, 1.0)
    engagement = 0.4 * _sat(_col(f, "sessions_30d"), 8.0) + 0.4 * recency + 0.2 * trend
    actions = _sat(_col(f, "actions_per_session_30d"), 3.0)
    usage_cols = [c for c in _names(f) if c.startswith(USAGE_PREFIX)]
    if usage_cols:
        adoption = (np.column_stack([_col(f, c) for c in usage_cols]) > 0).mean(axis=1)
        usage = 0.6 * adoption + 0.4 * actions
    else:
        usage = actions
    load = _col(f, "open_tickets") + 1.5 * _col(f, "urgent_tickets_90d") + 0.5 * _col(f, "tickets_30d")
    support = np.exp(-np.maximum(load, 0.0) / 3.0)
    missing = _col(f, "nps_missing", 0.0 if "nps_latest" in f else 1.0) > 0
    drop = np.minimum(_col(f, "nps_change"), 0.0)
    nps = np.where(missing, 0.5, np.clip((_col(f, "nps_latest", 7.0) * 10 + 5 * drop) / 100, 0.0, 1.0))
    strain = 0.7 * _col(f, "payment_failures_30d") + 0.7 * _col(f, "payment_failures_90d") + _col(f, "downgraded_90d")
    billing = np.exp(-np.maximum(strain, 0.0))
    tenure = _sat(_col(f, "tenure_days", 365.0), 90.0)
    return {
        "usage": usage,
        "engagement": engagement,
        "support": support,
        "nps": nps,
        "billing": billing,
        "tenure": tenure,
    }


def _weights(weights: dict | None) -> dict[str, float]:
    w = DEFAULT_WEIGHTS | (weights or {})
    total = sum(max(float(w[c]), 0.0) for c in COMPONENTS)
    if total <= 0:
        raise ValueError("health weights must have a positive sum")
    return {c: max(float(w[c]), 0.0) / total for c in COMPONENTS}


def _health(features: Features, weights: dict | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    comps = {k: 100.0 * np.clip(v, 0.0, 1.0) for k, v in _components(features).items()}
    w = _weights(weights)
    raw = sum(w[c] * comps[c] for c in COMPONENTS)
    return comps, np.clip(raw, 0.0, 100.0)


def health_components(features: pd.DataFrame, weights: dict | None = None) -> pd.DataFrame:
    """Columns usage, engagement, support, nps, billing, tenure (0–100 floats, rounded to 1
    decimal) and `health_score` (0–100 int, the weighted mean), index as `features`."""
    comps, raw = _health(features, weights)
    out = pd.DataFrame({c: np.round(comps[c], 1) for c in COMPONENTS}, index=features.index)
    out["health_score"] = np.rint(raw).astype(int)
    return out


class _OneRow(Mapping[str, np.ndarray]):
    """One customer's feature dict read as one-element columns, each made when it is read: the
    health score reads about twenty of the model's many features."""

    def __init__(self, values: Mapping[str, float]):
        self._values = values

    def __getitem__(self, name: str) -> np.ndarray:
        return np.array([self._values[name]], dtype=float)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def health_one(features: Mapping[str, float], weights: dict | None = None) -> dict[str, float]:
    """`health_components` for one customer's feature dict (the real-time path, no frame)."""
    comps, raw = _health(_OneRow(features), weights)
    out = {c: float(np.round(comps[c], 1)[0]) for c in COMPONENTS}
    out["health_score"] = int(np.rint(raw[0]))
    return out


def rules_probability(features: pd.DataFrame, weights: dict | None = None) -> np.ndarray:
    """Cold-start churn probability in [0, 1] from the health score (see module docstring)."""
    _, raw = _health(features, weights)
    return 1.0 / (1.0 + np.exp(-(INTERCEPT - SLOPE * raw)))


def _cause(component: str, f: pd.DataFrame) -> tuple[str, str]:
    """(cause name, feature shown) for a component; engagement splits on the trend."""
    if component == "engagement":
        return LOW_ENGAGEMENT, "days_since_last_session"
    return {
        "usage": (LOW_ADOPTION, "actions_per_session_30d"),
        "support": (SUPPORT, "urgent_tickets_90d"),
        "nps": (SATISFACTION, "nps_latest"),
        "billing": (PAYMENT, "payment_failures_90d"),
        "tenure": (ONBOARDING, "tenure_days"),
    }[component]


def rules_explain(features: pd.DataFrame, top_k: int = 3, weights: dict | None = None) -> list[list[dict]]:
    """Causes per row in the shape of `explain.causes_from_contributions`: components below
    `CAUSE_BELOW`, impact = the component's share of the weighted health deficit."""
    comps, _ = _health(features, weights)
    w = _weights(weights)
    deficit = np.column_stack([w[c] * (100.0 - comps[c]) for c in COMPONENTS])
    total = deficit.sum(axis=1)
    listed = np.column_stack([comps[c] < CAUSE_BELOW for c in COMPONENTS])
    # A customer who never answered the survey is not "unhappy": NPS is then never a cause.
    listed[:, COMPONENTS.index("nps")] &= _col(features, "nps_missing", 0.0 if "nps_latest" in features else 1.0) == 0
    ratio = _col(features, "usage_ratio_30d", 1.0)
    values = {name: _col(features, name) for name in HEALTHY_REFERENCE}
    order = np.argsort(-deficit, axis=1, kind="stable")
    out = []
    for r in range(len(features)):  # formatting only
        row: list[dict] = []
        seen: set[str] = set()
        for j in order[r]:
            if len(row) >= top_k or not listed[r, j] or total[r] <= 0:
                continue
            component = COMPONENTS[j]
            cause, feature = _cause(component, features)
            if component == "engagement" and ratio[r] < 0.7 and _col(features, "sessions_30d")[r] > 0:
                cause, feature = DECLINING_USAGE, "usage_ratio_30d"
            if component == "support" and values["urgent_tickets_90d"][r] == 0:
                feature = "open_tickets"
            if cause in seen:
                continue
            seen.add(cause)
            info = feature_info(feature)
            value = values[feature][r]
            row.append(
                {
                    "cause": cause,
                    "factor": info.label,
                    "feature": feature,
                    "impact": round(float(deficit[r, j] / total[r]), 4),
                    "direction": "increases",
                    "category": info.category,
                    "value": f"{info.label}: {info.format(value)} — retained customers: "
                    f"{info.format(HEALTHY_REFERENCE[feature])}",
                }
            )
        out.append(row)
    return out
