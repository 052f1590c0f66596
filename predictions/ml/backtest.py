"""Out-of-time backtest: how the training pipeline would have done had it run at past cutoffs.

For each cutoff the book is first cut down to what was known then (`facts_known_at`: customers
signed up by the cutoff, facts dated at or before it, later churns, ticket solves and
intervention outcomes unknown, today's snapshot columns dropped). On that book, as of the
cutoff:

* champion: what `training.train` returns (the pipeline `train_model --as-of` runs: same
  features, rolling-origin candidate choice, calibration);
* logistic: `training.logistic_reference`, a standardised logistic regression on log1p counts,
  fitted on every labelled training cutoff train() built;
* rules: the untrained health-score rules.

All three score the customers active at the cutoff (features from the cut book only), labelled
1 when the full book shows their churn in (cutoff, cutoff + horizon]. Since the models never
see the full book, a fact dated after the cutoff cannot change a figure except through that
label (tested by appending such facts). One caveat stays, the one `features` documents:
`customers.plan` and `customers.mrr` are today's values where billing has no dated `mrr_after`.

A cutoff is skipped, with the reason, when its horizon ends after the data's end, the book had
no event history then, training lacks labels or history, or too few of the evaluated customers
churned within the horizon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from predictions.ml import metrics as M
from predictions.ml import rules
from predictions.ml.features import DAY, active_customers, as_utc, learn_spec
from predictions.ml.tables import Tables, as_frame
from predictions.ml.training import (
    NotEnoughLabels,
    build_training_set,
    latest_fact_date,
    logistic_reference,
    rolling_cutoffs,
    train,
)

MODELS = ("champion", "logistic", "rules")
BOOTSTRAP_SAMPLES = 1000
# When each table's facts become known, and the later columns that stay unknown until then.
KNOWN_BY = {
    "sessions": ("started_at", ("ended_at",)),
    "tickets": ("opened_at", ("solved_at",)),
    "nps": ("responded_at", ()),
    "billing": ("occurred_at", ()),
    "actions": ("at", ()),
}
# The customers table's snapshot columns hold today's values (a book with history never uses
# them as model inputs): blanked so that nothing of the present can reach a past cutoff.
SNAPSHOT_BLANKS = {"feature_usage": None, "last_login": pd.NaT, "nps_score": np.nan, "support_tickets": np.nan}


@dataclass
class CutoffResult:
    """One cutoff's out-of-time evaluation, or the reason it was skipped."""

    cutoff: pd.Timestamp
    horizon_days: int
    skipped: str | None = None
    algorithm: str | None = None  # the champion's
    train_rows: int = 0
    train_positives: int = 0
    metrics: dict[str, dict] = field(default_factory=dict)  # model → headline figures + roc_auc_ci
    y: np.ndarray | None = None
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    # What the models saw, for references built outside (bench/model_quality.py's boosting).
    X_test: pd.DataFrame | None = None
    X_train: pd.DataFrame | None = None
    y_train: pd.Series | None = None

    def as_json(self) -> dict:
        out: dict = {"cutoff": self.cutoff.isoformat(), "horizon_days": self.horizon_days}
        if self.skipped:
            return out | {"skipped": self.skipped}
        return out | {
            "champion_algorithm": self.algorithm,
            "train_rows": self.train_rows,
            "train_positives": self.train_positives,
            "models": self.metrics,
        }


def _times(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_datetime(frame[column], utc=True, errors="coerce")


def facts_known_at(tables: Tables, cutoff: pd.Timestamp) -> Tables:
    """The book as it stood at `cutoff` (see the module docstring)."""
    cutoff = as_utc(cutoff)
    c = as_frame(tables.customers).loc[(_times(tables.customers, "signup_date") <= cutoff).to_numpy()].copy()
    later = (_times(c, "churned_at") > cutoff).to_numpy()
    c["churned_at"] = _times(c, "churned_at").mask(later)
    if "is_active" in c:
        # Churned later: active then. Inactive without a date stays so (when is unknown).
        c["is_active"] = c["is_active"].astype(object).where(~later, True)
    for column, blank in SNAPSHOT_BLANKS.items():
        if column in c:
            c[column] = [{} for _ in range(len(c))] if column == "feature_usage" else blank
    frames: dict[str, pd.DataFrame] = {"customers": c.reset_index(drop=True)}
    for name, (known, later_columns) in KNOWN_BY.items():
        frame = getattr(tables, name)
        if frame is None or known not in frame:
            frames[name] = frame
            continue
        frame = frame.loc[(_times(frame, known) <= cutoff).to_numpy()].copy()
        for column in later_columns:
            if column in frame:
                unknown = (_times(frame, column) > cutoff).to_numpy()
                frame[column] = _times(frame, column).mask(unknown)
        frames[name] = frame.reset_index(drop=True)
    return Tables(**frames)


def churn_within(tables: Tables, customer_ids: pd.Index, cutoff: pd.Timestamp, horizon_days: int) -> np.ndarray:
    """1 for each customer whose churn date (in the full book) is in (cutoff, cutoff + horizon]."""
    cutoff = as_utc(cutoff)
    churned = _times(tables.customers, "churned_at")
    churned.index = tables.customers["customer_id"].to_numpy()
    at = churned.reindex(customer_ids)
    return ((at > cutoff) & (at <= cutoff + horizon_days * DAY)).astype(int).to_numpy()


def figures(y: np.ndarray, p: np.ndarray, *, seed: int = 0) -> dict:
    """ROC AUC with a bootstrap 95 % interval, PR AUC, log loss, Brier, top-decile lift, ECE,
    n and positives."""
    return M.headline(y, p) | {"roc_auc_ci": M.bootstrap_auc_ci(y, p, n=BOOTSTRAP_SAMPLES, seed=seed)}


def backtest_cutoff(
    tables: Tables,
    cutoff: pd.Timestamp,
    *,
    horizon_days: int = 90,
    data_end: pd.Timestamp | None = None,
    min_positives: int = 50,
    min_test_positives: int = 10,
    n_cutoffs: int = 8,
    step_days: int = 30,
    seed: int = 0,
    params: dict | None = None,
) -> CutoffResult:
    """Train on what was known at `cutoff`, evaluate on the `horizon_days` after it."""
    cutoff = as_utc(cutoff)
    result = CutoffResult(cutoff, horizon_days)
    data_end = latest_fact_date(tables) if data_end is None else as_utc(data_end)
    if cutoff + horizon_days * DAY > data_end:
        result.skipped = f"its {horizon_days}-day horizon ends after the data's end ({data_end:%Y-%m-%d})"
        return result
    known = facts_known_at(tables, cutoff)
    if known.customers.empty:
        result.skipped = "no customer had signed up by then"
        return result
    if learn_spec(known, cutoff).snapshot:
        result.skipped = "the book had no event history then (a snapshot cannot be evaluated out of time)"
        return result
    population = pd.Index(active_customers(known, cutoff)["customer_id"].to_numpy())
    y = churn_within(tables, population, cutoff, horizon_days)
    if int(y.sum()) == len(y):
        result.skipped = f"all {len(y)} customers active then churned within {horizon_days} days: nothing to rank"
        return result
    if int(y.sum()) < min_test_positives:
        result.skipped = (
            f"{int(y.sum())} of the {len(y)} customers active then churned within {horizon_days} days, "
            f"at least {min_test_positives} needed to evaluate"
        )
        return result
    try:
        model = train(
            known,
            cutoff,
            horizon_days=horizon_days,
            n_cutoffs=n_cutoffs,
            step_days=step_days,
            seed=seed,
            params=params,
            min_positives=min_positives,
        )
    except NotEnoughLabels as exc:  # and NotEnoughHistory
        result.skipped = f"not enough to train on: {exc}"
        return result
    except ValueError as exc:  # build_training_set: no training cutoff has a full horizon of history
        result.skipped = f"not enough history to train on: {exc}"
        return result
    X_test = model.features(known, cutoff)  # the same population, with the model's features
    y = churn_within(tables, X_test.index, cutoff, horizon_days)
    X_train, y_train, _ = build_training_set(
        known, rolling_cutoffs(cutoff, horizon_days, n_cutoffs, step_days), horizon_days, as_of=cutoff, spec=model.spec
    )
    reference = logistic_reference(X_train, y_train, seed)
    result.algorithm = model.algorithm
    result.train_rows, result.train_positives = len(y_train), int(y_train.sum())
    result.y, result.X_test, result.X_train, result.y_train = y, X_test, X_train, y_train
    result.probabilities = {
        "champion": model.predict_proba(X_test),
        "logistic": reference.predict_proba(X_test),
        "rules": rules.rules_probability(X_test),
    }
    result.metrics = {name: figures(y, p, seed=seed) for name, p in result.probabilities.items()}
    return result


def backtest(tables: Tables, cutoffs: list[pd.Timestamp], **options) -> list[CutoffResult]:
    """`backtest_cutoff` for each cutoff, oldest first (options as there)."""
    data_end = options.pop("data_end", None) or latest_fact_date(tables)
    return [backtest_cutoff(tables, c, data_end=data_end, **options) for c in sorted(as_utc(c) for c in cutoffs)]


STEP = re.compile(r"^(\d+)([dm])$")


def parse_step(text: str) -> pd.DateOffset | pd.Timedelta:
    """`30d` (days) or `3m` (calendar months) as a step between cutoffs."""
    match = STEP.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a step such as 30d (days) or 3m (months)")
    count = int(match.group(1))
    return pd.DateOffset(months=count) if match.group(2) == "m" else count * DAY


def cutoffs_between(start: pd.Timestamp, end: pd.Timestamp, step: pd.DateOffset | pd.Timedelta) -> list[pd.Timestamp]:
    """`start`, `start + step`, `start + 2 step`, … up to and including `end` (multiples of the
    step from the start, so months from the 31st land on each month's last day)."""
    start, end = as_utc(start), as_utc(end)
    out: list[pd.Timestamp] = []
    while (at := start + len(out) * step) <= end:
        out.append(at)
    return out
