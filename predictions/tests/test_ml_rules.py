"""The rules baseline: bounded, monotonic, explained in the same shape as the model."""

import numpy as np
import pandas as pd
import pytest

from predictions.causes import CAUSES
from predictions.ml.features import build_features, usage_features
from predictions.ml.rules import COMPONENTS, health_components, rules_explain, rules_probability
from predictions.tests.ml_factories import AS_OF, synthetic_tables


@pytest.fixture(scope="module")
def features():
    book = synthetic_tables(n=500, seed=5)
    return build_features(book, AS_OF).join(usage_features(book))


def test_health_is_bounded(features):
    h = health_components(features)
    assert list(h.columns) == [*COMPONENTS, "health_score"]
    assert ((h >= 0) & (h <= 100)).all().all()
    assert h["health_score"].dtype.kind == "i"
    p = rules_probability(features)
    assert ((p >= 0) & (p <= 1)).all() and not np.isnan(p).any()


def test_weights_are_configurable(features):
    only_nps = health_components(features, dict.fromkeys(COMPONENTS, 0.0) | {"nps": 1.0})
    np.testing.assert_array_equal(only_nps["health_score"], np.rint(only_nps["nps"]).astype(int))
    with pytest.raises(ValueError):
        health_components(features, dict.fromkeys(COMPONENTS, 0.0))


@pytest.mark.parametrize(
    ("column", "step"),
    [
        ("open_tickets", 1),
        ("urgent_tickets_90d", 1),
        ("payment_failures_90d", 1),
        ("days_since_last_session", 7),
        ("downgraded_90d", 1),
    ],
)
def test_more_risk_never_lowers_the_probability(features, column, step):
    base = rules_probability(features)
    worse = features.copy()
    for _ in range(3):
        worse[column] = worse[column] + step
        p = rules_probability(worse)
        assert (p >= base - 1e-12).all()
        base = p


def test_empty_frame_and_explanations(features):
    empty = features.iloc[:0]
    assert len(health_components(empty)) == 0 and rules_probability(empty).shape == (0,)
    risky = features.copy()
    risky["urgent_tickets_90d"] = 4.0
    risky["days_since_last_session"] = 40.0
    for causes in rules_explain(risky, top_k=2):
        assert 0 < len(causes) <= 2
        assert len({c["cause"] for c in causes}) == len(causes)
        for c in causes:
            assert c["cause"] in CAUSES and 0 < c["impact"] <= 1 and c["direction"] == "increases"
    assert {c["cause"] for c in rules_explain(risky)[0]} >= {"Support issues", "Low engagement"}
    healthy = pd.DataFrame(
        [
            {
                "sessions_30d": 30,
                "days_since_last_session": 0,
                "actions_per_session_30d": 9,
                "nps_latest": 10,
                "tenure_days": 900,
                "usage_ratio_30d": 1.2,
            }
        ]
    )
    assert rules_explain(healthy) == [[]]
