"""Point-in-time features: no future facts, no label, no per-customer loops."""

import ast
import pathlib
import time

import numpy as np
import pandas as pd
import pytest

from predictions.causes import CAUSES
from predictions.ml.features import (
    CONTEXT,
    FEATURES,
    FeatureSpec,
    build_features,
    feature_info,
    usage_features,
)
from predictions.ml.tables import Tables
from predictions.tests.ml_factories import AS_OF, append_rows, make_tables, synthetic_tables

DAY = pd.Timedelta(days=1)
CUTOFF = AS_OF - 120 * DAY


def truncate(tables: Tables, cutoff: pd.Timestamp) -> Tables:
    """What the database looked like at `cutoff`: later facts gone, later outcomes unknown."""
    c = tables.customers.copy()
    c.loc[c["churned_at"] > cutoff, "churned_at"] = pd.NaT
    t = tables.tickets.loc[tables.tickets["opened_at"] <= cutoff].copy()
    t.loc[t["solved_at"] > cutoff, "solved_at"] = pd.NaT
    return Tables(
        customers=c,
        sessions=tables.sessions.loc[tables.sessions["started_at"] <= cutoff],
        tickets=t,
        nps=tables.nps.loc[tables.nps["responded_at"] <= cutoff],
        billing=tables.billing.loc[tables.billing["occurred_at"] <= cutoff],
    )


@pytest.fixture(scope="module")
def book() -> Tables:
    return synthetic_tables(n=400, seed=3)


def test_features_only_see_the_past(book):
    full = build_features(book, CUTOFF)
    past = build_features(truncate(book, CUTOFF), CUTOFF)
    pd.testing.assert_frame_equal(full, past)


def test_adding_facts_after_the_cutoff_changes_nothing(book):
    before = build_features(book, CUTOFF)
    ids = before.index[:20].to_numpy()
    later = [CUTOFF + pd.Timedelta(hours=1), CUTOFF + 10 * DAY, AS_OF + 30 * DAY]
    rows = [(int(c), t) for c in ids for t in later]
    after = append_rows(
        book,
        sessions=[{"customer_id": c, "started_at": t, "pages_viewed": 50, "n_actions": 20} for c, t in rows],
        tickets=[{"customer_id": c, "opened_at": t, "priority": "urgent"} for c, t in rows],
        nps=[{"customer_id": c, "responded_at": t, "score": 0} for c, t in rows],
        billing=[
            {"customer_id": c, "occurred_at": t, "kind": k, "amount": -10.0, "mrr_after": 1.0}
            for c, t in rows
            for k in ("payment_failed", "subscription_changed")
        ],
    )
    customers = after.customers.copy()
    customers.loc[customers["customer_id"].isin(ids), "churned_at"] = CUTOFF + 5 * DAY  # churn after cutoff
    after = Tables(**{**after.__dict__, "customers": customers})
    pd.testing.assert_frame_equal(before, build_features(after, CUTOFF))


def test_population_excludes_future_signups_and_past_churners():
    tables = make_tables(
        customers=[
            {"customer_id": 1, "signup_date": CUTOFF - 50 * DAY, "plan": "a", "mrr": 10.0},
            {"customer_id": 2, "signup_date": CUTOFF + DAY, "plan": "a", "mrr": 10.0},
            {"customer_id": 3, "signup_date": CUTOFF - 50 * DAY, "plan": "b", "mrr": 10.0, "churned_at": CUTOFF - DAY},
            {"customer_id": 4, "signup_date": CUTOFF - 50 * DAY, "plan": "b", "mrr": 10.0, "churned_at": CUTOFF + DAY},
        ]
    )
    X = build_features(tables, CUTOFF, FeatureSpec(plans=("a", "b")))
    assert list(X.index) == [1, 4]
    assert X[["plan_a", "plan_b", "plan_other"]].to_numpy().tolist() == [[1, 0, 0], [0, 1, 0]]


def test_empty_histories_and_future_events_give_neutral_values():
    tables = make_tables(
        customers=[
            {"customer_id": 1, "signup_date": CUTOFF - 10 * DAY, "plan": "a", "mrr": 99.0},
            {"customer_id": 2, "signup_date": CUTOFF - 400 * DAY, "plan": "a", "mrr": 99.0},
        ],
        sessions=[{"customer_id": 1, "started_at": CUTOFF + 3 * DAY, "pages_viewed": 3, "n_actions": 2}],
        nps=[{"customer_id": 2, "responded_at": CUTOFF + 3 * DAY, "score": 1}],
    )
    X = build_features(tables, CUTOFF)
    assert not X.isna().any().any()
    assert all(dtype == np.float64 for dtype in X.dtypes)
    assert X.loc[1, "days_since_last_session"] == pytest.approx(10.0)
    assert X.loc[2, "days_since_last_session"] == 365.0  # capped
    assert X.loc[:, "never_active"].tolist() == [1.0, 1.0]
    assert X.loc[:, "nps_missing"].tolist() == [1.0, 1.0]
    assert X.loc[:, "nps_latest"].tolist() == [7.0, 7.0]
    assert X.loc[:, "mrr"].tolist() == [99.0, 99.0]
    assert X.loc[:, "sessions_30d"].tolist() == [0.0, 0.0]


def test_feature_values_on_a_hand_built_customer():
    t0 = CUTOFF
    tables = make_tables(
        customers=[{"customer_id": 7, "signup_date": t0 - 200 * DAY, "plan": "pro", "mrr": 500.0}],
        sessions=[
            {"customer_id": 7, "started_at": t0 - d * DAY, "pages_viewed": 4, "n_actions": 2} for d in (2, 10, 40, 45)
        ],
        tickets=[
            {"customer_id": 7, "opened_at": t0 - 5 * DAY, "priority": "urgent"},
            {"customer_id": 7, "opened_at": t0 - 50 * DAY, "solved_at": t0 + DAY, "priority": "low"},
            {"customer_id": 7, "opened_at": t0 - 60 * DAY, "solved_at": t0 - 59 * DAY, "priority": "high"},
        ],
        nps=[
            {"customer_id": 7, "responded_at": t0 - 100 * DAY, "score": 9},
            {"customer_id": 7, "responded_at": t0 - 10 * DAY, "score": 4},
        ],
        billing=[
            {
                "customer_id": 7,
                "occurred_at": t0 - 120 * DAY,
                "kind": "subscription_changed",
                "amount": 0.0,
                "mrr_after": 800.0,
            },
            {
                "customer_id": 7,
                "occurred_at": t0 - 20 * DAY,
                "kind": "subscription_changed",
                "amount": -400.0,
                "mrr_after": 400.0,
            },
            {"customer_id": 7, "occurred_at": t0 - 3 * DAY, "kind": "payment_failed", "amount": 400.0},
        ],
    )
    x = build_features(tables, t0, FeatureSpec(plans=("pro",))).loc[7]
    assert x["days_since_last_session"] == pytest.approx(2.0)
    assert (x["sessions_7d"], x["sessions_30d"], x["sessions_90d"]) == (1, 2, 4)
    assert x["usage_ratio_30d"] == pytest.approx((2 + 1) / (2 + 1))
    assert x["pages_30d"] == 8 and x["actions_per_session_30d"] == 2
    assert (x["tickets_30d"], x["tickets_90d"], x["open_tickets"], x["urgent_tickets_90d"]) == (1, 3, 2, 2)
    assert (x["nps_latest"], x["nps_change"], x["nps_missing"]) == (4, -5, 0)
    assert x["mrr"] == 400 and x["mrr_change_90d_pct"] == pytest.approx(-0.5) and x["downgraded_90d"] == 1
    assert (x["payment_failures_30d"], x["payment_failures_90d"]) == (1, 1)
    assert (x["nps_mean"], x["nps_count"], x["nps_days_since"]) == (6.5, 2, pytest.approx(10.0))
    assert x["sessions_per_month"] == pytest.approx(4 / (200 / 30))
    assert x["tickets_per_month"] == pytest.approx(3 / (200 / 30))
    assert x["sessions_ratio_30_90d"] == pytest.approx((2 + 1) / (4 / 3 + 1))
    assert x["plan_pro"] == 1 and x["tenure_days"] == pytest.approx(200)


def test_vectorised_on_20000_customers():
    rng = np.random.default_rng(0)
    n, k = 20_000, 50
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "signup_date": AS_OF - pd.to_timedelta(rng.uniform(100, 700, n), unit="D"),
            "plan": rng.choice(["a", "b", "c"], n),
            "mrr": rng.uniform(10, 1000, n),
            "churned_at": pd.NaT,
        }
    )
    sessions = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n), k),
            "started_at": AS_OF - pd.to_timedelta(rng.uniform(0, 365, n * k), unit="D"),
            "pages_viewed": rng.integers(1, 20, n * k),
            "n_actions": rng.integers(1, 8, n * k),
        }
    )
    tables = make_tables(customers=customers, sessions=sessions)
    start = time.perf_counter()
    X = build_features(tables, AS_OF)
    elapsed = time.perf_counter() - start
    print(f"\nbuild_features: {n} customers × {k} sessions in {elapsed:.2f} s")
    assert len(X) == n and X["sessions_90d"].sum() > 0
    assert elapsed < 30  # generous: the point is no per-customer loop (that would take minutes)


def test_usage_features_are_separate_from_model_features(book):
    usage = usage_features(book)
    assert list(usage.columns) == ["fu_dashboards", "fu_reports"]
    assert not any(c.startswith("fu_") for c in build_features(book, AS_OF).columns)
    weird = make_tables(
        customers=[
            {"customer_id": 1, "signup_date": CUTOFF, "plan": "a", "mrr": 1.0, "feature_usage": {"x": 3, "s": "t"}},
            {"customer_id": 2, "signup_date": CUTOFF, "plan": "a", "mrr": 1.0, "feature_usage": None},
        ]
    )
    assert usage_features(weird).to_dict("index") == {1: {"fu_x": 3.0}, 2: {"fu_x": 0.0}}


def test_catalogue_uses_known_causes():
    for name, info in FEATURES.items():
        assert info.cause == CONTEXT or info.cause in CAUSES, name
        assert info.category in {"product", "billing", "support", "competition", "other"}
        info.format(1.5)
    assert feature_info("plan_gold").cause == CONTEXT
    assert feature_info("fu_api_calls").cause in CAUSES
    assert feature_info("act_export_report__30d").cause in CAUSES


def test_ml_core_has_no_django_imports():
    root = pathlib.Path(__file__).resolve().parents[1] / "ml"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "django" for n in names), path


def test_features_on_a_hand_built_edge_case():
    """Facts after the cutoff, open/solved tickets, NaN scores, an MRR change and a credit."""
    tables = make_tables(
        customers=[{"customer_id": 1, "signup_date": CUTOFF - 400 * DAY, "plan": "pro", "mrr": 90.0}],
        sessions=[
            {"customer_id": 1, "started_at": CUTOFF - 3 * DAY, "pages_viewed": 5, "n_actions": 2},
            {"customer_id": 1, "started_at": CUTOFF - 40 * DAY, "pages_viewed": 7, "n_actions": 4},
            {"customer_id": 1, "started_at": CUTOFF + 1 * DAY, "pages_viewed": 99, "n_actions": 9},
        ],
        tickets=[
            {"customer_id": 1, "opened_at": CUTOFF - 5 * DAY, "solved_at": CUTOFF + DAY, "priority": "Urgent"},
            {"customer_id": 1, "opened_at": CUTOFF - 50 * DAY, "solved_at": CUTOFF - 45 * DAY, "priority": "low"},
        ],
        nps=[
            {"customer_id": 1, "responded_at": CUTOFF - 100 * DAY, "score": 9},
            {"customer_id": 1, "responded_at": CUTOFF - 10 * DAY, "score": 4},
            {"customer_id": 1, "responded_at": CUTOFF + 2 * DAY, "score": 10},
        ],
        billing=[
            {
                "customer_id": 1,
                "occurred_at": CUTOFF - 120 * DAY,
                "kind": "subscription_changed",
                "amount": 0.0,
                "mrr_after": 120.0,
            },
            {
                "customer_id": 1,
                "occurred_at": CUTOFF - 20 * DAY,
                "kind": "subscription_changed",
                "amount": -30.0,
                "mrr_after": 90.0,
            },
            {"customer_id": 1, "occurred_at": CUTOFF - 2 * DAY, "kind": "payment_failed", "amount": 90.0},
        ],
    )
    one = build_features(tables, CUTOFF).loc[1]
    assert one["open_tickets"] == 1 and one["urgent_tickets_90d"] == 1 and one["nps_latest"] == 4
    assert one["mrr_change_90d_pct"] == pytest.approx(-0.25) and one["downgraded_90d"] == 1
    assert (one["sessions_30d"], one["pages_90d"], one["payment_failures_30d"]) == (1, 12, 1)


@pytest.mark.parametrize("as_text", [False, True])
def test_mrr_90_days_ago_is_the_latest_change_at_or_before_that_instant(as_text):
    """The MRR then and now come from one reading of the billing facts: a change exactly 90 days
    before the cutoff counts for "then", one a microsecond later does not; a row without
    `mrr_after`, or an unreadable one in a text column, is no change."""
    us = pd.Timedelta(microseconds=1)
    billing = [
        {"customer_id": c, "occurred_at": CUTOFF - 200 * DAY, "kind": "subscription_changed", "mrr_after": 100.0}
        for c in (1, 2)
    ]
    billing += [
        {"customer_id": 1, "occurred_at": CUTOFF - 90 * DAY, "kind": "subscription_changed", "mrr_after": 80.0},
        {"customer_id": 2, "occurred_at": CUTOFF - 90 * DAY + us, "kind": "subscription_changed", "mrr_after": 80.0},
        {"customer_id": 2, "occurred_at": CUTOFF - DAY, "kind": "payment_succeeded", "mrr_after": None},
        {"customer_id": 3, "occurred_at": CUTOFF - 10 * DAY, "kind": "subscription_changed", "mrr_after": 50.0},
    ]
    tables = make_tables(
        customers=[
            {"customer_id": c, "signup_date": CUTOFF - 400 * DAY, "plan": "a", "mrr": 70.0} for c in (1, 2, 3, 4)
        ],
        billing=[{**row, "amount": 0.0} for row in billing],
    )
    if as_text:
        tables.billing["mrr_after"] = tables.billing["mrr_after"].map(lambda v: None if pd.isna(v) else f"{v:g}")
        tables.billing.loc[tables.billing["customer_id"] == 3, "mrr_after"] = "n/a"
    X = build_features(tables, CUTOFF)
    assert X["mrr"].tolist() == [80.0, 80.0, 70.0 if as_text else 50.0, 70.0]
    # 1: 80 since exactly 90 days ago (no change); 2: 100 then (its 80 came a microsecond later);
    # 3: no change by then, so its MRR then is its MRR now.
    assert X["mrr_change_90d_pct"].tolist() == pytest.approx([0.0, -0.2, 0.0, 0.0])


def test_action_type_features_on_hand_built_customers():
    """Per learned action type: counts over 30 and 90 days, the monthly rate since signup and the
    days since the last one (the tenure when never), each type in its own columns; a type not
    learned counts nowhere, a future action nowhere, and two types whose names sanitise alike
    both keep a column."""
    t0 = CUTOFF
    tables = make_tables(
        customers=[
            {"customer_id": 7, "signup_date": t0 - 200 * DAY, "plan": "pro", "mrr": 500.0},
            {"customer_id": 8, "signup_date": t0 - 20 * DAY, "plan": "pro", "mrr": 500.0},
        ],
    )
    actions = pd.DataFrame(
        [
            (7, t0 - 2 * DAY, "login", 1.0),
            (7, t0 - 40 * DAY, "login", 1.0),
            (7, t0 - 100 * DAY, "login", 1.0),
            (7, t0 - 10 * DAY, "export report", 3.0),
            (7, t0 - 1 * DAY, "not learned", 5.0),
            (7, t0 + 1 * DAY, "login", 1.0),  # after the cutoff: unseen
        ],
        columns=["customer_id", "at", "type", "count"],
    )
    tables = Tables(**{**vars(tables), "actions": actions})
    spec = FeatureSpec(action_types=("export report", "export_report", "login"))
    X = build_features(tables, t0, spec)

    months = 200 / 30
    assert X.loc[7, ["act_login__30d", "act_login__90d", "act_login__per_month", "act_login__days_since"]].tolist() == [
        1.0,
        2.0,
        pytest.approx(3 / months),
        pytest.approx(2.0),
    ]
    exports = ["act_export_report__30d", "act_export_report__90d", "act_export_report__per_month"]
    assert X.loc[7, exports].tolist() == [3.0, 3.0, pytest.approx(3 / months)]
    assert X.loc[7, "act_export_report__days_since"] == pytest.approx(10.0)
    never = ["act_export_report_2__30d", "act_export_report_2__90d", "act_export_report_2__per_month"]
    assert X.loc[7, never].tolist() == [0.0, 0.0, 0.0]
    assert X.loc[7, "act_export_report_2__days_since"] == pytest.approx(200.0)  # never: the tenure
    assert X.loc[8, "act_login__days_since"] == pytest.approx(20.0)
    assert X.loc[8, "act_login__per_month"] == 0.0
    assert not [name for name in X.columns if "not_learned" in name]
