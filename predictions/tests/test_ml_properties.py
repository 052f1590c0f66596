"""F4: property tests for the ML core's features and the rules score (Hypothesis, derandomized).

Scores stay in [0, 1] and features stay finite for empty, one-event, all-null and future-dated
histories; a batch of N customers gives each the same features and score as scoring it alone.
"""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictions.ml.features import build_features, learn_spec
from predictions.ml.rules import rules_probability
from predictions.tests.ml_factories import AS_OF, make_tables

PROPS = settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
days = st.floats(-400, 30, allow_nan=False)  # days from AS_OF; positive = future-dated


@st.composite
def histories(draw):
    n = draw(st.integers(1, 4))
    customers, sessions, tickets, nps = [], [], [], []
    for cid in range(1, n + 1):
        customers.append(
            {
                "customer_id": cid,
                "signup_date": AS_OF + pd.Timedelta(days=draw(st.floats(-800, -1))),
                "plan": draw(st.sampled_from(["starter", "pro", None])),
                "mrr": draw(st.one_of(st.none(), st.floats(0, 5000))),
                "churned_at": None,
                "feature_usage": draw(st.one_of(st.none(), st.just({}), st.just({"reports": 3}))),
            }
        )
        for _ in range(draw(st.integers(0, 3))):
            start = AS_OF + pd.Timedelta(days=draw(days))
            sessions.append(
                {"customer_id": cid, "started_at": start, "ended_at": start + pd.Timedelta(minutes=5),
                 "pages_viewed": draw(st.integers(0, 50)), "n_actions": draw(st.integers(0, 50))}
            )  # fmt: skip
        for _ in range(draw(st.integers(0, 2))):
            tickets.append(
                {"customer_id": cid, "opened_at": AS_OF + pd.Timedelta(days=draw(days)), "solved_at": None,
                 "priority": draw(st.sampled_from(["low", "normal", "high", "urgent"]))}
            )  # fmt: skip
        for _ in range(draw(st.integers(0, 1))):
            nps.append(
                {
                    "customer_id": cid,
                    "responded_at": AS_OF + pd.Timedelta(days=draw(days)),
                    "score": draw(st.integers(0, 10)),
                }
            )
    frames = {"customers": customers}
    for name, rows in (("sessions", sessions), ("tickets", tickets), ("nps", nps)):
        if rows:
            frames[name] = rows
    return make_tables(**frames)


def only(tables, cid: int):
    return type(tables)(**{name: frame[frame["customer_id"] == cid] for name, frame in vars(tables).items()})


@PROPS
@given(tables=histories())
def test_scores_are_bounded_and_features_finite(tables):
    features = build_features(tables, AS_OF)
    numeric = features.select_dtypes("number").to_numpy(dtype=float)
    assert np.isfinite(numeric).all(), features
    scores = rules_probability(features)
    assert ((scores >= 0) & (scores <= 1)).all() and not np.isnan(scores).any(), scores


@PROPS
@given(tables=histories())
def test_a_batch_scores_each_customer_as_it_would_alone(tables):
    """Real time is a batch of one: with the model's spec, a customer's row must not depend on
    who else is in the batch."""
    spec = learn_spec(tables, AS_OF)
    batch = build_features(tables, AS_OF, spec)
    batch_scores = pd.Series(rules_probability(batch), index=batch.index)
    for cid in batch.index:
        alone = build_features(only(tables, cid), AS_OF, spec)
        assert list(alone.columns) == list(batch.columns)
        pd.testing.assert_series_equal(alone.loc[cid], batch.loc[cid], check_names=False, check_dtype=False)
        assert rules_probability(alone)[0] == batch_scores.loc[cid]
