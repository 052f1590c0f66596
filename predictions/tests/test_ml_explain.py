"""Explanations: only risk-increasing causes, one per cause, approx vs exact agreement."""

import time

import numpy as np
import pandas as pd
import pytest

from predictions.causes import CAUSES
from predictions.ml.explain import (
    causes_from_contributions,
    exact_rows,
    explain_batch,
    explain_exact,
    listable,
    top_causes_agreement,
)
from predictions.ml.features import build_features, feature_info
from predictions.ml.training import train
from predictions.tests.ml_factories import AS_OF, synthetic_tables

KEYS = {"cause", "factor", "feature", "impact", "direction", "category", "value"}


@pytest.fixture(scope="module")
def scored():
    book = synthetic_tables(n=3000, seed=0)
    model = train(book, AS_OF, seed=0, params={"algorithm": "xgboost"})
    X = build_features(book, AS_OF, model.spec)
    return model, X, model.predict_proba(X)


def check(rows, contribs, names, top_k):
    for r, causes in enumerate(rows):
        assert len(causes) <= top_k
        assert len({c["cause"] for c in causes}) == len(causes)
        impacts = [c["impact"] for c in causes]
        assert impacts == sorted(impacts, reverse=True)
        assert sum(impacts) <= 1.0 + 1e-3
        for c in causes:
            assert set(c) == KEYS and c["cause"] in CAUSES and 0 < c["impact"] <= 1
            assert c["direction"] == "increases"
            assert contribs[r, names.index(c["feature"])] > 0  # only risk-increasing features
            assert c["factor"] == feature_info(c["feature"]).label


def test_explain_lists_only_risk_increasing_causes(scored):
    model, X, p = scored
    top = X.iloc[np.argsort(-p)[:200]]
    rows = explain_exact(model, top, top_k=3)
    check(rows, model.contributions(top), model.feature_names, 3)
    assert all(rows)  # the riskiest customers all get a reason
    assert "retained customers" in rows[0][0]["value"]
    assert len(explain_exact(model, top.iloc[:5], top_k=1)[0]) <= 1


def test_causes_merge_features_of_one_cause():
    names = ["sessions_30d", "days_since_last_session", "open_tickets", "mrr"]
    contribs = np.array([[0.2, 0.6, 0.2, 1.0, -3.0], [-0.1, -0.1, -0.1, -0.1, 0.0]])
    X = pd.DataFrame([[1.0, 30.0, 2.0, 99.0], [9.0, 1.0, 0.0, 99.0]], columns=names)
    rows = causes_from_contributions(contribs, X, names, {"days_since_last_session": 3.0}, top_k=3)
    (eng, sup), none = rows
    assert none == []  # nothing pushes risk up
    assert eng["cause"] == "Low engagement" and eng["feature"] == "days_since_last_session"
    assert eng["impact"] == pytest.approx(0.4) and sup["impact"] == pytest.approx(0.1)  # mrr is context
    assert eng["value"] == "Days since last login: 30 days — retained customers: 3 days"


def test_a_value_on_the_healthy_side_is_never_named_a_cause():
    """A model can push risk up through a value better than retained customers' (correlated
    features offset each other): that contribution stays in the mass but is not listed."""
    names = ["sessions_90d", "sessions_30d", "tickets_90d", "days_since_last_session"]
    healthy = {"sessions_90d": 28.0, "sessions_30d": 9.0, "tickets_90d": 0.0, "days_since_last_session": 3.0}
    X = pd.DataFrame([[63.0, 4.0, 0.0, 3.0]], columns=names)
    contribs = np.array([[0.5, 0.3, 0.1, 0.1, -2.0]])  # last column: the bias
    (row,) = causes_from_contributions(contribs, X, names, healthy, top_k=3)
    # Sessions in 90 days (63 vs 28) is healthy, no tickets is as retained customers have, and
    # the last login as recent as theirs: only the 30-day sessions (4 vs 9) are a reason.
    assert [c["feature"] for c in row] == ["sessions_30d"]
    assert row[0]["impact"] == pytest.approx(0.3)  # a share of all that pushes risk up
    assert listable(X.to_numpy(), names, healthy).tolist() == [[False, True, False, False]]
    # Unknown reference or value: nothing to compare, so it may be listed.
    assert listable(np.array([[np.nan, 4.0]]), ["sessions_90d", "usage_reports"], {"sessions_90d": 28.0}).all()


def test_explain_batch_policy_and_approx_agreement(scored):
    model, X, _p = scored
    sample = X.sample(n=min(1000, len(X)), random_state=0)
    ps = model.predict_proba(sample)
    exact = explain_batch(model, sample, ps, floor=0.0)  # every row exact
    approx = explain_batch(model, sample, ps, floor=1.01, margin=0.0)  # every row approximate
    agreement = top_causes_agreement(exact, approx)
    first = np.mean(
        [bool(a) and bool(b) and a[0]["cause"] == b[0]["cause"] for a, b in zip(exact, approx, strict=True)]
    )
    print(
        f"\napprox vs exact top-3 cause agreement (Jaccard) on {len(sample)} rows: {agreement:.3f}; "
        f"top-1 agreement {first:.3f}"
    )
    assert agreement >= 0.6
    mixed = explain_batch(model, sample, ps, floor=0.3, exact_for=[sample.index[0]])
    values = sample.reindex(columns=model.feature_names).to_numpy(dtype=float)
    listed = listable(values, model.feature_names, model.healthy_reference)
    chosen = exact_rows(model.contributions(sample, approx=True), model.feature_names, ps, floor=0.3, listed=listed)
    assert chosen[ps >= 0.3].all() and chosen.mean() > (ps >= 0.3).mean()  # near ties too
    chosen[0] = True
    for r in np.flatnonzero(chosen):
        assert mixed[r] == exact[r]
    used = np.where(chosen[:, None], model.contributions(sample), model.contributions(sample, approx=True))
    check(mixed, used, model.feature_names, 3)
    # The near-tie rule is what lifts the agreement above the floor-only policy's.
    floor_only = explain_batch(model, sample, ps, floor=0.3, margin=0.0)
    assert top_causes_agreement(mixed, exact) > top_causes_agreement(floor_only, exact)

    # Cost of exact SHAP vs a prediction, per row.
    big = X.sample(n=5000, replace=True, random_state=1)
    timings = {}
    for name, fn in {
        "predict": lambda: model.predict_proba(big),
        "approx": lambda: model.contributions(big, approx=True),
        "exact": lambda: model.contributions(big),
    }.items():
        start = time.perf_counter()
        for _ in range(3):
            fn()
        timings[name] = (time.perf_counter() - start) / 3 / len(big)
    print(
        f"per row: predict {timings['predict'] * 1e6:.1f} µs, approx {timings['approx'] * 1e6:.1f} µs, "
        f"exact SHAP {timings['exact'] * 1e6:.1f} µs → exact/predict ≈ {timings['exact'] / timings['predict']:.1f}×"
    )
