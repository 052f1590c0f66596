"""Training: honest time split, calibration, determinism, serialisation, cold start, leakage."""

import numpy as np
import pandas as pd
import pytest

from predictions.ml.drift import drift_summary
from predictions.ml.explain import explain_exact
from predictions.ml.features import build_features
from predictions.ml.training import (
    LabelLeakage,
    NotEnoughLabels,
    TrainedModel,
    assert_no_label_leakage,
    build_training_set,
    choose,
    fit_logistic,
    psi,
    risk_bands,
    rolling_cutoffs,
    signed_log1p,
    train,
)
from predictions.tests.ml_factories import AS_OF, make_tables, synthetic_tables

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def book():
    return synthetic_tables(n=3000, seed=0)


@pytest.fixture(scope="module")
def model(book) -> TrainedModel:
    return train(book, AS_OF, seed=0)


def test_model_beats_or_matches_the_baseline_and_is_calibrated(model):
    m, b = model.metrics, model.baseline_metrics
    print(
        f"\nreport block: n={m['n_samples']} positive_rate={m['positive_rate']:.3f}"
        f"\nmodel    ROC AUC {m['roc_auc']:.3f} PR AUC {m['pr_auc']:.3f} ECE {m['ece']:.4f} "
        f"brier {m['brier']:.4f} lift@10% {m['lift_at_10pct']:.2f}"
        f"\nbaseline ROC AUC {b['roc_auc']:.3f} PR AUC {b['pr_auc']:.3f} ECE {b['ece']:.4f} "
        f"brier {b['brier']:.4f} lift@10% {b['lift_at_10pct']:.2f}"
    )
    assert m["roc_auc"] >= b["roc_auc"] - 0.02
    assert m["roc_auc"] > 0.6  # a real signal is learnt
    assert m["ece"] <= 0.05
    assert m["leakage_flags"] == {}
    assert len(m["threshold_table"]) == 9 and m["threshold_table"][0]["threshold"] == 0.1
    assert set(m["performance_by_segment"]) <= {"starter", "growth", "enterprise"}
    assert m["feature_count"] == len(model.feature_names)
    assert sum(model.importance.values()) == pytest.approx(1.0, abs=1e-3)


def test_rolling_origin_split(model):
    w = model.training_window
    assert w["protocol"] == "rolling-origin"
    cutoffs = rolling_cutoffs(AS_OF, 90, 8, 30)
    # The shipped model: refitted on every labelled cutoff, calibrated on the latest one's
    # out-of-fold scores.
    assert w["calibration_cutoff"] == cutoffs[-1].isoformat()
    assert w["fit_cutoffs"] == [c.isoformat() for c in cutoffs]
    assert w["calibration"].startswith("out of fold")
    assert pd.Timestamp(w["calibration_cutoff"]) + 90 * DAY == AS_OF
    # Three rolling blocks, each predicted by models that saw no label after it began.
    assert w["validation_cutoffs"] == [c.isoformat() for c in cutoffs[-3:]]
    blocks = model.metrics["blocks"]
    for block, position in zip(blocks, (5, 6, 7), strict=True):
        assert block["fit_cutoffs"] == position - 3  # fit cutoffs 0..position-4 (stop: position-3)
        assert pd.Timestamp(block["stop"]) + 90 * DAY <= pd.Timestamp(block["block"])
        assert set(block) >= {"logistic", "xgboost", "rules"}
    assert model.metrics["protocol"] == "rolling-origin" and len(model.metrics["roc_auc_ci"]) == 2


def test_model_card_is_json_serialisable(model):
    import json

    for part in (model.metrics, model.baseline_metrics, model.params, model.importance, model.training_window):
        json.dumps(part)


def test_training_is_deterministic_and_round_trips(book, model):
    again = train(book, AS_OF, seed=0)
    X = build_features(book, AS_OF, model.spec)
    p1, p2 = model.predict_proba(X), again.predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    restored = TrainedModel.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(restored.predict_proba(X), p1)
    assert restored.feature_names == model.feature_names and restored.metrics == model.metrics
    assert ((p1 >= 0) & (p1 <= 1)).all() and not np.isnan(p1).any()


def test_probabilities_for_empty_histories_and_future_events(model):
    tables = make_tables(
        customers=[
            {"customer_id": 1, "signup_date": AS_OF - 3 * DAY, "plan": "starter", "mrr": 49.0},
            {"customer_id": 2, "signup_date": AS_OF - 300 * DAY, "plan": "unknown-plan", "mrr": 0.0},
        ],
        sessions=[{"customer_id": 1, "started_at": AS_OF + 40 * DAY, "pages_viewed": 3, "n_actions": 1}],
        tickets=[{"customer_id": 2, "opened_at": AS_OF + DAY, "priority": "urgent"}],
    )
    X = build_features(tables, AS_OF)
    p = model.predict_proba(X)
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all() and not np.isnan(p).any()
    assert model.predict_proba(X.iloc[:0]).shape == (0,)
    assert model.predict_proba(X.drop(columns=["mrr"])).shape == (2,)  # missing columns → 0


def test_not_enough_labels():
    quiet = synthetic_tables(n=150, seed=1)
    with pytest.raises(NotEnoughLabels) as err:
        train(quiet, AS_OF, min_positives=50)
    assert err.value.required == 50


def test_training_set_labels_and_observable_cutoffs(book):
    cutoffs = [*rolling_cutoffs(AS_OF, 90, 3, 30), AS_OF - 30 * DAY]  # the last one is not observable
    X, y, meta = build_training_set(book, cutoffs, 90, as_of=AS_OF)
    assert sorted(meta["cutoff"].unique()) == cutoffs[:3]
    assert len(X) == len(y) == len(meta) and not X.isna().any().any()
    churned = book.customers.set_index("customer_id")["churned_at"].reindex(meta["customer_id"]).to_numpy()
    expected = (churned > meta["cutoff"].to_numpy()) & (churned <= (meta["cutoff"] + 90 * DAY).to_numpy())
    np.testing.assert_array_equal(y.to_numpy(), expected.astype(int))


def test_leakage_check_flags_a_label_copy(book):
    X, y, _ = build_training_set(book, rolling_cutoffs(AS_OF, 90, 2, 30), 90)
    assert_no_label_leakage(X, y)  # the honest features pass
    leaky = X.assign(churn_flag=y.to_numpy() * 3.0 + np.random.default_rng(0).normal(0, 0.1, len(y)))
    with pytest.raises(LabelLeakage, match="churn_flag"):
        assert_no_label_leakage(leaky, y)


def test_psi_is_small_on_the_same_population_and_large_on_a_shift(book, model):
    X = build_features(book, pd.Timestamp(model.training_window["fit_cutoffs"][-1]))
    same = psi(model.reference_stats, X)
    shifted = psi(model.reference_stats, X.assign(sessions_30d=X["sessions_30d"] * 0 + 1000))
    assert same["sessions_30d"] < 0.1
    assert shifted["sessions_30d"] > 1.0


def test_the_shipped_algorithm_is_chosen_on_the_blocks_with_ties_to_the_simpler(model):
    chosen = model.params["selection"]
    assert model.params["algorithm"] == model.algorithm == choose(chosen["roc_auc_by_block"])[0]
    assert choose({"logistic": [0.70, 0.72, 0.71], "xgboost": [0.705, 0.722, 0.713]})[0] == "logistic"  # a tie
    assert choose({"logistic": [0.70, 0.72, 0.71], "xgboost": [0.75, 0.76, 0.74]})[0] == "xgboost"
    # A gain on average, but no steadier than its spread: still a tie.
    assert choose({"logistic": [0.70, 0.72, 0.71], "xgboost": [0.80, 0.66, 0.70]})[0] == "logistic"


def test_a_logistic_model_explains_exactly_and_round_trips(book):
    trained = train(book, AS_OF, seed=0, params={"algorithm": "logistic"})
    X_now = build_features(book, AS_OF, trained.spec)
    contributions = trained.contributions(X_now)
    raw = trained.raw_proba(X_now)
    # SHAP additivity: the contributions and the bias sum to the model's log-odds.
    np.testing.assert_allclose(contributions.sum(axis=1), np.log(raw / (1 - raw)), rtol=1e-6, atol=1e-6)
    assert explain_exact(trained, X_now.head(5))[0]
    restored = TrainedModel.from_bytes(trained.to_bytes())
    assert restored.algorithm == "logistic"
    np.testing.assert_array_equal(restored.predict_proba(X_now), trained.predict_proba(X_now))


def test_a_book_without_enough_history_is_a_cold_start_not_a_crash():
    young = synthetic_tables(n=200, seed=1, history_days=100)  # not one horizon + step of history
    with pytest.raises(NotEnoughLabels, match="usable cutoffs"):
        train(young, AS_OF)


def test_lean_model_calls_give_sklearns_numbers_exactly(book):
    """`raw_proba`/`Calibrator.transform` skip sklearn's per-call validation and `predict_one`
    (real time) reads a numpy row: all must give the very numbers of the sklearn/xgboost calls."""
    trained = train(book, AS_OF, seed=0, params={"algorithm": "xgboost"})
    X_now = build_features(book, AS_OF, trained.spec)
    expected_raw = trained.booster.predict(trained.matrix(X_now))
    expected = trained.calibrator.model.predict_proba(trained.calibrator._logit(expected_raw))[:, 1]
    np.testing.assert_array_equal(trained.predict_proba(X_now), expected)
    contributions = trained.contributions(X_now)
    for position in (0, 7, 42):
        features = X_now.iloc[position].to_dict()
        probability, contribs = trained.predict_one(trained.row(features))
        assert probability == expected[position]
        np.testing.assert_array_equal(contribs, contributions[position])
    # The logistic path, with the pipeline training fits.
    X, y, _meta = build_training_set(book, rolling_cutoffs(AS_OF, 90, 4, 30), 90, spec=trained.spec)
    trained.booster, (trained.linear, trained.log_columns) = None, fit_logistic(X, y)
    values = trained.values(X_now).copy()
    values[:, trained.log_columns] = signed_log1p(values[:, trained.log_columns])
    np.testing.assert_array_equal(trained.raw_proba(X_now), trained.linear.predict_proba(values)[:, 1])
    probability, contribs = trained.predict_one(trained.row(X_now.iloc[3].to_dict()))
    assert probability == trained.predict_proba(X_now)[3]
    np.testing.assert_array_equal(contribs, trained.contributions(X_now)[3])


def test_a_loaded_model_predicts_on_one_thread_and_lends_the_batch_every_core(book):
    """One-row calls on every core waited for a busy second core (8.6 ms instead of 0.6 ms p50
    measured under load): a loaded model uses one thread, `threads()` lends more and gives back."""
    import json

    def nthread(booster) -> str:
        return json.loads(booster.save_config())["learner"]["generic_param"]["nthread"]

    model = train(book, AS_OF, seed=0, params={"algorithm": "xgboost"})
    restored = TrainedModel.from_bytes(model.to_bytes())
    assert nthread(restored.booster) == "1"
    with restored.threads():
        assert nthread(restored.booster) == "0"
    assert nthread(restored.booster) == "1"


def test_risk_bands_are_relative_to_the_base_rate():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 15, 10_000)  # a 6 % book: calibrated risks almost all far below 0.5
    y = (rng.random(10_000) < p).astype(int)
    bands = risk_bands(p, y)
    base = y.mean()
    assert bands["base_rate"] == round(base, 4)
    assert bands["high"] == round(min(np.quantile(p, 0.9), 3 * base), 4)
    assert bands["medium"] == round(1.5 * base, 4)
    # A churn rate near one half: 3x is out of reach, the top decile is high; medium stays below it.
    high_book = risk_bands(np.linspace(0, 1, 101), np.r_[np.zeros(50), np.ones(51)])
    assert high_book["high"] == 0.9 and high_book["medium"] == round(1.5 * 51 / 101, 4)


def test_the_shipped_model_is_refitted_on_every_labelled_cutoff(book):
    """The blocks choose the algorithm; the model shipped learns from all the labelled rows,
    newest included (a model fitted on the oldest cutoffs only ranked worse out of time)."""
    shipped = train(book, AS_OF, seed=0, params={"algorithm": "logistic"})
    X, y, _ = build_training_set(book, rolling_cutoffs(AS_OF, 90, 8, 30), 90, as_of=AS_OF, spec=shipped.spec)
    everything, _ = fit_logistic(X, y, seed=0)
    assert np.allclose(shipped.linear[-1].coef_, everything[-1].coef_)
    assert shipped.training_window["fit_cutoffs"] == sorted({c.isoformat() for c in rolling_cutoffs(AS_OF, 90, 8, 30)})


def test_a_trained_model_puts_churners_above_low_on_a_low_base_rate_book(model, book):
    """Fixed 0.5 / 0.8 bands on calibrated probabilities of a book that churns ~10 % a quarter
    put almost no churner above "low"; bands relative to the base rate flag most of them."""
    bands = model.params["risk_thresholds"]
    cutoff = pd.Timestamp(model.training_window["calibration_cutoff"])
    X, y, _ = build_training_set(book, [cutoff], 90, as_of=AS_OF, spec=model.spec)
    p, churners = model.predict_proba(X), y.to_numpy() == 1
    flagged = p >= bands["medium"]
    print(
        f"\nbands {bands}: churners above low {flagged[churners].mean():.2f}, at 0.5 {(p >= 0.5)[churners].mean():.2f}"
    )
    assert bands["base_rate"] < 0.2 and bands["medium"] < bands["high"] < 0.5
    # About the top decile: the bands come from out-of-fold probabilities, these are the shipped
    # model's own on rows it was fitted on.
    assert 0.08 <= (p >= bands["high"]).mean() <= 0.12
    assert flagged[churners].mean() >= 0.4 > 2 * (p >= 0.5)[churners].mean()
    assert flagged[churners].mean() > 2 * flagged[~churners].mean()


def test_drift_status_follows_the_mean_psi_not_the_worst_feature():
    one_recency_jump = {"days_since_last_session": 2.3, **{f"f{i}": 0.05 for i in range(20)}}

    summary = drift_summary(one_recency_jump)

    assert summary == {
        "feature_drift_score": round((2.3 + 20 * 0.05) / 21, 4),
        "max_feature_drift": 2.3,
        "most_drifted_feature": "days_since_last_session",
        "drift_status": "moderate",
    }
    assert drift_summary({"a": 0.3, "b": 0.2})["drift_status"] == "major"
    assert drift_summary({"a": 0.3, "b": 0.2}, major=0.3)["drift_status"] == "moderate"
    assert drift_summary({"a": 0.05, "b": 0.1})["drift_status"] == "stable"
    assert drift_summary({})["drift_status"] == "unknown"


def test_the_card_stores_each_blocks_interval_and_the_bands_precision_and_recall(model, book):
    for block in model.metrics["blocks"]:
        for name in ("logistic", "xgboost", "rules"):
            figures = block[name]
            low, high = figures["roc_auc_ci"]
            assert 0 <= low < figures["roc_auc"] < high <= 1, (block["block"], name)
    # The rules' card (what the rules version shows) holds the same blocks.
    assert model.rules_metrics["blocks"] == model.metrics["blocks"]
    for metrics, bands in (
        (model.metrics, model.params["risk_thresholds"]),
        (model.rules_metrics, model.rules_risk_thresholds),
    ):
        rows = metrics["band_thresholds"]
        assert [(row["band"], row["threshold"]) for row in rows] == [
            ("medium", bands["medium"]),
            ("high", bands["high"]),
        ]
        # A higher threshold flags fewer customers and catches fewer churners.
        assert rows[0]["contacted"] >= rows[1]["contacted"] and rows[0]["recall"] >= rows[1]["recall"]
        assert set(rows[0]) == {"band", "threshold", "contacted", "precision", "recall", "f1", "expected_value"}


def test_the_bootstrap_interval_is_the_percentiles_of_roc_auc_score_over_the_same_resamples():
    """Each resample's AUC is computed from draw counts; it must be what `roc_auc_score` gives on
    the resampled rows themselves (ties half), skipping resamples with one class, on scores full
    of ties and a rare positive class."""
    from sklearn.metrics import roc_auc_score

    from predictions.ml import metrics as M

    rng = np.random.default_rng(5)
    y = np.zeros(40)
    y[[3, 17]] = 1.0  # two churners of 40: about one resample in eight has none
    p = np.round(rng.random(40) * 0.5 + y * 0.2, 1)  # six score levels: many ties
    draws = np.random.default_rng(11)
    order = np.argsort(p, kind="stable")
    ys, ps = y[order], p[order]
    expected = []
    for _ in range(200):
        pick = draws.integers(0, y.size, y.size)
        if 0 < ys[pick].sum() < y.size:
            expected.append(roc_auc_score(ys[pick], ps[pick]))
    assert len(expected) < 200  # some resamples had no churner: the case is exercised
    low, high = np.quantile(expected, [0.025, 0.975])
    assert M.bootstrap_auc_ci(y, p, n=200, seed=11) == pytest.approx([low, high], abs=1e-12)


def test_delongs_interval_agrees_with_the_bootstrap_and_needs_both_classes():
    from predictions.ml import metrics as M

    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(rng.random(2000) * 0.6 + y * 0.25, 0, 1)
    delong, bootstrap = M.delong_auc_ci(y, p), M.bootstrap_auc_ci(y, p)
    assert delong[0] < M.roc_auc(y, p) < delong[1]
    assert delong == pytest.approx(bootstrap, abs=0.01)
    # Ties count half, as in the AUC: a constant score is 0.5 whatever the interval.
    assert M.delong_auc_ci(y, np.full(2000, 0.3)) == pytest.approx([0.5, 0.5])
    assert M.delong_auc_ci(np.zeros(10), rng.random(10)) is None
