"""How far a scored population has moved from the model's training data, in one status.

Pure Python on purpose: the model card reads it on every request, and importing it must not load
the training stack (xgboost, scikit-learn)."""

from collections.abc import Mapping

DRIFT_MODERATE_PSI = 0.1
DRIFT_MAJOR_PSI = 0.25


def drift_summary(
    values: Mapping[str, float], *, moderate: float = DRIFT_MODERATE_PSI, major: float = DRIFT_MAJOR_PSI
) -> dict:
    """A batch's drift from its per-feature PSI: the mean (`feature_drift_score`), the worst
    feature, and a status from the mean — "major" at `major` or more, "moderate" at `moderate`.

    The mean, not the worst feature: a feed that ends some hours before the batch shifts every
    recency feature by those hours, which alone lifts one feature's PSI past 2 on the demo book
    while the population is unchanged, and a retrain would not remove it."""
    if not values:
        return {
            "feature_drift_score": None,
            "max_feature_drift": None,
            "most_drifted_feature": None,
            "drift_status": "unknown",
        }
    mean = sum(values.values()) / len(values)
    worst = max(values, key=lambda name: values[name])
    status = "major" if mean >= major else "moderate" if mean >= moderate else "stable"
    return {
        "feature_drift_score": round(mean, 4),
        "max_feature_drift": round(values[worst], 4),
        "most_drifted_feature": worst,
        "drift_status": status,
    }
