"""A book that is only a customers table: stratified K-fold training on its own columns."""

import numpy as np
import pandas as pd
import pytest

from predictions.ml.features import active_customers, build_features, churned_flags
from predictions.ml.training import train
from predictions.tests.ml_factories import AS_OF, snapshot_tables


@pytest.fixture(scope="module")
def book():
    return snapshot_tables(n=2000, seed=0)


@pytest.fixture(scope="module")
def model(book):
    return train(book, AS_OF, seed=0)


def test_inactive_without_a_churn_date_is_a_churner_and_never_scored(book):
    c = book.customers
    undated = (~c["is_active"] & c["churned_at"].isna()).to_numpy()
    assert undated.sum() > 100
    assert churned_flags(c, AS_OF)[undated].all()
    assert not set(c.loc[undated, "customer_id"]) & set(active_customers(book, AS_OF)["customer_id"])


def test_a_snapshot_book_trains_with_stratified_folds_and_is_calibrated(model, book):
    m, base = model.metrics, model.baseline_metrics
    print(
        f"\nsnapshot: {model.algorithm} ROC AUC {m['roc_auc']:.3f} {m['roc_auc_ci']} ECE {m['ece']:.3f} "
        f"log loss {m['log_loss']:.3f}; logistic {base['roc_auc']:.3f}; rules {model.rules_metrics['roc_auc']:.3f}"
    )
    assert model.training_window["protocol"].startswith("stratified 5-fold")
    assert [b["block"] for b in m["blocks"]] == [f"fold {k}/5" for k in range(1, 6)]
    assert m["n_samples"] == 2000 and m["positive_rate"] == pytest.approx(churned_flags(book.customers, AS_OF).mean())
    assert 0.40 < m["positive_rate"] < 0.55
    assert m["roc_auc"] >= base["roc_auc"] - 1e-9 and m["roc_auc"] > model.rules_metrics["roc_auc"]
    assert m["roc_auc"] > 0.8 and m["ece"] <= 0.05
    spec = model.spec
    assert spec.snapshot and spec.usage_keys == ("ratio_30d", "seats")
    assert spec.usage_levels == (("internet", ("dsl", "fiber optic")),)
    assert spec.plans == ("monthly [legacy]", "one<year", "two-year")
    names = set(model.feature_names)
    assert {"plan_monthly_legacy", "plan_one_year", "fu_ratio_30d", "fu_seats", "cat_internet__fiber_optic"} <= names
    assert not {"sessions_30d", "usage_ratio_30d", "payment_failures_90d"} & names  # no history: constant, left out
    assert all(name.replace("_", "").isalnum() for name in names)


def test_a_snapshot_model_scores_the_active_customers_with_their_own_columns(model, book):
    X = model.features(book, AS_OF)
    active = book.customers.loc[book.customers["is_active"]]
    assert sorted(X.index) == sorted(active["customer_id"])
    row = X.loc[int(active["customer_id"].iloc[0])]
    source = active.iloc[0]
    assert row["open_tickets"] == source["support_tickets"]
    assert row["fu_seats"] == source["feature_usage"]["seats"]
    assert row["days_since_last_session"] == pytest.approx((AS_OF - source["last_login"]) / pd.Timedelta(days=1))
    p = model.predict_proba(X)
    assert ((p > 0) & (p < 1)).all() and 0.2 < p.mean() < 0.6


def test_a_history_model_never_reads_the_snapshot_columns():
    """At a past cutoff today's NPS, ticket count and usage would leak the future: a book with
    event history ignores them."""
    from predictions.tests.ml_factories import synthetic_tables

    book = synthetic_tables(n=300, seed=2)
    X = build_features(book, AS_OF)
    c = book.customers.assign(nps_score=0, support_tickets=50, last_login=AS_OF)
    changed = type(book)(**{**book.__dict__, "customers": c})
    pd.testing.assert_frame_equal(X, build_features(changed, AS_OF))
    assert not np.any([name.startswith("fu_") for name in X.columns])
