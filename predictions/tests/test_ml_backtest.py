"""The out-of-time backtest in the ML core: what a cutoff knows, labels after it, skips."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from predictions.ml.backtest import (
    MODELS,
    backtest,
    backtest_cutoff,
    churn_within,
    cutoffs_between,
    facts_known_at,
    parse_step,
)
from predictions.ml.features import active_customers
from predictions.ml.training import train
from predictions.tests.ml_factories import AS_OF, snapshot_tables, synthetic_tables

DAY = pd.Timedelta(days=1)
CUTOFF = AS_OF - 200 * DAY
OPTIONS = {"min_positives": 30, "horizon_days": 90}


@pytest.fixture(scope="module")
def book():
    return synthetic_tables(n=1200, seed=3)


@pytest.fixture(scope="module")
def result(book):
    return backtest_cutoff(book, CUTOFF, **OPTIONS)


def _with_future_facts(book, cutoff):
    """`book` plus facts dated after `cutoff` that would give the label away: the customers who
    churn within the horizon open urgent tickets and answer NPS 0 the day after the cutoff, the
    others log in; a customer signs up later; a retained one churns long after the horizon."""
    active = active_customers(book, cutoff)["customer_id"].to_numpy()
    churns = churn_within(book, pd.Index(active), cutoff, 90).astype(bool)
    leavers, stayers = active[churns], active[~churns]
    after = cutoff + DAY
    tickets = pd.DataFrame(
        {"customer_id": np.repeat(leavers, 3), "opened_at": after, "solved_at": pd.NaT, "priority": "urgent"}
    )
    nps = pd.DataFrame({"customer_id": leavers, "responded_at": after, "score": 0})
    sessions = pd.DataFrame(
        {"customer_id": stayers, "started_at": after, "ended_at": after + pd.Timedelta(hours=1), "pages_viewed": 9}
    ).assign(n_actions=4)
    newcomer = book.customers.iloc[[0]].assign(customer_id=book.customers["customer_id"].max() + 1, signup_date=after)
    customers = pd.concat([book.customers, newcomer], ignore_index=True)
    still_active = customers["customer_id"].eq(stayers[0])
    customers.loc[still_active, "churned_at"] = cutoff + 200 * DAY

    def more(frame, extra):
        return pd.concat([frame, extra.reindex(columns=frame.columns)], ignore_index=True)

    return dataclasses.replace(
        book,
        customers=customers,
        tickets=more(book.tickets, tickets),
        nps=more(book.nps, nps),
        sessions=more(book.sessions, sessions),
    )


def test_each_model_is_scored_on_the_customers_active_at_the_cutoff(book, result):
    active = active_customers(book, CUTOFF)["customer_id"]
    churned = pd.to_datetime(book.customers.set_index("customer_id")["churned_at"], utc=True).reindex(active)
    expected_positives = int(((churned > CUTOFF) & (churned <= CUTOFF + 90 * DAY)).sum())

    assert result.skipped is None
    assert list(result.metrics) == list(MODELS)
    for figures in result.metrics.values():
        assert figures["n_samples"] == len(active)
        assert figures["positives"] == expected_positives
        low, high = figures["roc_auc_ci"]
        assert 0.5 < low <= figures["roc_auc"] <= high <= 1
        assert 0 < figures["brier"] < 0.25
        assert 0 <= figures["ece"] < 0.1
        assert figures["lift_at_10pct"] > 1
    # The trained models learn the synthetic book's signal; the rules only read health.
    assert result.metrics["champion"]["roc_auc"] > result.metrics["rules"]["roc_auc"]


def test_facts_after_the_cutoff_change_nothing(book, result):
    leaky = _with_future_facts(book, CUTOFF)
    again = backtest_cutoff(leaky, CUTOFF, **OPTIONS)

    assert again.metrics == result.metrics
    for name in MODELS:
        np.testing.assert_array_equal(again.probabilities[name], result.probabilities[name])


def test_the_book_at_a_cutoff_holds_only_what_was_known_then(book):
    known = facts_known_at(book, CUTOFF)

    assert (pd.to_datetime(known.customers["signup_date"], utc=True) <= CUTOFF).all()
    assert not (pd.to_datetime(known.customers["churned_at"], utc=True) > CUTOFF).any()
    assert (pd.to_datetime(known.sessions["started_at"], utc=True) <= CUTOFF).all()
    assert not (pd.to_datetime(known.tickets["solved_at"], utc=True) > CUTOFF).any()
    assert (pd.to_datetime(known.billing["occurred_at"], utc=True) <= CUTOFF).all()
    signed_up = (pd.to_datetime(book.customers["signup_date"], utc=True) <= CUTOFF).sum()
    assert len(known.customers) == signed_up
    assert len(known.sessions) == (pd.to_datetime(book.sessions["started_at"], utc=True) <= CUTOFF).sum()


def test_the_champion_is_what_training_as_of_the_cutoff_on_the_whole_book_gives(book, result):
    """train_model --as-of trains on every fact in the database: the same model (it reads
    nothing after as_of), so the backtest measures what that command ships."""
    shipped = train(book, CUTOFF, seed=0, min_positives=30)

    pd.testing.assert_frame_equal(shipped.features(book, CUTOFF), result.X_test)

    np.testing.assert_array_equal(shipped.predict_proba(result.X_test), result.probabilities["champion"])
    assert shipped.algorithm == result.algorithm


def test_cutoffs_whose_horizon_passes_the_data_end_or_without_labels_are_skipped_oldest_first(book):
    early, late = backtest(book, [AS_OF - 30 * DAY, CUTOFF], horizon_days=90, min_positives=10_000)

    assert late.cutoff == AS_OF - 30 * DAY
    assert late.skipped.startswith("its 90-day horizon ends after the data's end (2025-06-")
    assert early.skipped.startswith("not enough to train on: ")
    assert "churn labels, at least 10000 needed to train" in early.skipped
    assert early.metrics == {} and early.as_json()["skipped"] == early.skipped


def test_too_few_churners_in_the_horizon_skip_the_evaluation(book):
    result = backtest_cutoff(book, CUTOFF, horizon_days=90, min_test_positives=100_000)

    assert result.skipped.endswith("churned within 90 days, at least 100000 needed to evaluate")


def test_a_snapshot_book_cannot_be_backtested():
    result = backtest_cutoff(snapshot_tables(n=300, seed=0), AS_OF - 120 * DAY, horizon_days=90)

    assert result.skipped is not None and "no event history" in result.skipped


def test_steps_and_cutoff_schedules():
    start = pd.Timestamp("2026-01-31", tz="UTC")

    assert cutoffs_between(start, pd.Timestamp("2026-03-05", tz="UTC"), parse_step("30d")) == [
        start,
        pd.Timestamp("2026-03-02", tz="UTC"),
    ]
    assert cutoffs_between(start, pd.Timestamp("2026-04-30", tz="UTC"), parse_step("1m")) == [
        start,
        pd.Timestamp("2026-02-28", tz="UTC"),
        pd.Timestamp("2026-03-31", tz="UTC"),
        pd.Timestamp("2026-04-30", tz="UTC"),
    ]
    for bad in ("0d", "30", "2w", "-1d", ""):
        with pytest.raises(ValueError, match="is not a step such as 30d"):
            parse_step(bad)
