"""Training: rolling point-in-time cutoffs, a time-based honest split, XGBoost + calibration.

Labels
------
A row is (customer, cutoff); its label is 1 when the customer churned in (cutoff, cutoff +
horizon]. A cutoff is usable only when cutoff + horizon ≤ as_of (the label must be observable).

Split (never random; by cutoff date)
------------------------------------
`train(tables, as_of)` uses `n_cutoffs` cutoffs, `step_days` apart, the latest at
as_of − horizon. Of these:

* the latest cutoff is the **report** block: only the recorded metrics are computed on it;
* the latest-but-one is the **calibration** block: XGBoost early stopping and the probability
  calibrator (and the baseline's calibrator) are fit on it;
* the others are the **fit** block, *purged*: a fit cutoff is kept only if its label window ends
  on or before the calibration cutoff (cutoff + horizon ≤ calibration cutoff), so no outcome
  seen in training happens after the held-out blocks start. With the defaults (8 cutoffs,
  30-day step, 90-day horizon) this keeps 4 fit cutoffs and drops 2 as a gap.

Nothing is tuned on the report block, so its metrics are an honest estimate for a model
trained some months ago and applied now. The shipped model is exactly the evaluated one.

Baseline: a standardised logistic regression on the same fit block, calibrated the same way.

Model choice: both are scored on the calibration block (ROC AUC of the raw scores, which
calibration cannot change); the shipped model is the XGBoost one unless the logistic regression
ranks that block better. On small books (a few hundred customers, a dozen churners per block)
the boosted trees overfit and the linear model wins; on large ones XGBoost usually does. The
choice is recorded in `params["algorithm"]` and the metrics are always the shipped model's.

Determinism: XGBoost with a fixed `seed` and `nthread` (default 1) gives identical models.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from predictions.ml import metrics as M
from predictions.ml.features import DAY, as_utc, build_features
from predictions.ml.tables import Tables

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5.0,
    "lambda": 1.0,
    "nthread": 1,
    "num_boost_round": 600,
    "early_stopping_rounds": 50,
    "calibration": "sigmoid",  # or "isotonic"
}
DEPTH_SEARCH = (2, 4)
NOT_BOOSTER_PARAMS = ("num_boost_round", "early_stopping_rounds", "calibration")
LEAKAGE_AUC = 0.99
PSI_BINS = 10


class NotEnoughLabels(Exception):
    """Too few churners to train on; use the rules baseline instead."""

    def __init__(self, positives: int, required: int):
        super().__init__(f"{positives} churn labels, at least {required} needed to train")
        self.positives = positives
        self.required = required


class NotEnoughHistory(NotEnoughLabels):
    """The book is too young for three labelled cutoffs; use the rules baseline instead."""

    def __init__(self, usable: int):
        Exception.__init__(self, f"only {usable} usable cutoffs (a cutoff needs a full horizon of history), need 3")
        self.positives, self.required = 0, 0


class LabelLeakage(AssertionError):
    """A single feature predicts the label almost perfectly."""


# --- Data set ---------------------------------------------------------------------------------


def latest_fact_date(tables: Tables) -> pd.Timestamp:
    """The latest timestamp in any table (the natural as-of when none is given)."""
    cols = {
        "customers": ("signup_date", "churned_at"),
        "sessions": ("started_at",),
        "tickets": ("opened_at", "solved_at"),
        "nps": ("responded_at",),
        "billing": ("occurred_at",),
        "interventions": ("created_at", "completed_at"),
    }
    latest = []
    for name, names in cols.items():
        frame = getattr(tables, name)
        for col in names:
            if frame is not None and col in frame and frame[col].notna().any():
                latest.append(as_utc(pd.to_datetime(frame[col]).max()))
    if not latest:
        raise ValueError("the tables hold no dated facts")
    return max(latest)


def build_training_set(
    tables: Tables,
    cutoffs: list[pd.Timestamp],
    horizon_days: int = 90,
    *,
    as_of: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """X (features as of each cutoff, stacked), y (churned in (cutoff, cutoff + horizon]) and
    meta (customer_id, cutoff, plan, mrr), sharing one RangeIndex. Cutoffs whose horizon ends
    after `as_of` (default: the latest fact date) are skipped: their labels are not observable."""
    as_of = latest_fact_date(tables) if as_of is None else as_utc(as_of)
    horizon = horizon_days * DAY
    churned_at = pd.to_datetime(tables.customers.set_index("customer_id")["churned_at"], utc=True)
    plans = tables.customers.set_index("customer_id")["plan"].astype(str)
    xs, ys, metas = [], [], []
    for cutoff in sorted(as_utc(c) for c in cutoffs):
        if cutoff + horizon > as_of:
            log.info("skipping cutoff %s: its %s-day horizon ends after %s", cutoff, horizon_days, as_of)
            continue
        X = build_features(tables, cutoff)
        ch = churned_at.reindex(X.index)
        y = ((ch > cutoff) & (ch <= cutoff + horizon)).astype(int).to_numpy()
        xs.append(X.reset_index(drop=True))
        ys.append(y)
        metas.append(
            pd.DataFrame(
                {
                    "customer_id": X.index.to_numpy(),
                    "cutoff": cutoff,
                    "plan": plans.reindex(X.index).to_numpy(),
                    "mrr": X["mrr"].to_numpy(),
                }
            )
        )
    if not xs:
        raise ValueError(f"no cutoff has its {horizon_days}-day horizon before {as_of}")
    columns = list(dict.fromkeys(c for x in xs for c in x.columns))
    X = pd.concat([x.reindex(columns=columns, fill_value=0.0) for x in xs], ignore_index=True).astype(float)
    y = pd.Series(np.concatenate(ys), name="churned", dtype=int)
    meta = pd.concat(metas, ignore_index=True)
    return X, y, meta


def find_label_leakage(X: pd.DataFrame, y, threshold: float = LEAKAGE_AUC, seed: int = 0) -> dict[str, float]:
    """Features that alone predict `y` with validation ROC AUC ≥ `threshold`: a depth-3 tree per
    feature fit on a random half, scored on the other half (catches non-monotone leaks too)."""
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        return {}
    rng = np.random.default_rng(seed)
    half = rng.random(len(y)) < 0.5
    if len(np.unique(y[half])) < 2 or len(np.unique(y[~half])) < 2:
        return {}
    flagged = {}
    for col in X.columns:
        x = X[col].to_numpy(dtype=float).reshape(-1, 1)
        tree = DecisionTreeClassifier(max_depth=3, random_state=seed).fit(x[half], y[half])
        auc = M.roc_auc(y[~half], tree.predict_proba(x[~half])[:, 1])
        if auc is not None and auc >= threshold:
            flagged[col] = round(auc, 4)
    return flagged


def assert_no_label_leakage(X: pd.DataFrame, y, threshold: float = LEAKAGE_AUC) -> None:
    """Raise `LabelLeakage` when any single feature has validation ROC AUC ≥ `threshold`."""
    flagged = find_label_leakage(X, y, threshold)
    if flagged:
        raise LabelLeakage(f"features that alone predict the label (validation ROC AUC): {flagged}")


# --- Calibration and drift --------------------------------------------------------------------


class Calibrator:
    """Maps raw probabilities to calibrated ones: Platt scaling on the logit ("sigmoid") or
    isotonic regression. Fit on held-out data only."""

    def __init__(self, method: str = "sigmoid"):
        if method not in ("sigmoid", "isotonic"):
            raise ValueError(f"unknown calibration method {method!r}")
        self.method = method
        self.model: Any = None

    @staticmethod
    def _logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)).reshape(-1, 1)

    def fit(self, p, y) -> Calibrator:
        y = np.asarray(y, dtype=int)
        if self.method == "isotonic":
            self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(np.asarray(p), y)
        else:
            self.model = LogisticRegression(C=1e6, max_iter=1000).fit(self._logit(p), y)
        return self

    def transform(self, p) -> np.ndarray:
        if self.model is None:
            return np.clip(np.asarray(p, dtype=float), 0, 1)
        if self.method == "isotonic":
            out = self.model.predict(np.asarray(p, dtype=float))
        else:  # LogisticRegression.predict_proba's arithmetic without its input validation
            out = expit(self._logit(p) @ self.model.coef_.T + self.model.intercept_)[:, 0]
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def reference_bins(X: pd.DataFrame, bins: int = PSI_BINS) -> dict[str, dict]:
    """Per feature: inner quantile edges and the share of training rows in each bin."""
    out = {}
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    for col in X.columns:
        x = X[col].to_numpy(dtype=float)
        edges = np.unique(np.quantile(x, qs)) if x.size else np.array([])
        counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
        out[col] = {"edges": edges.tolist(), "fractions": (counts / max(x.size, 1)).tolist()}
    return out


def psi(reference_stats: dict, X: pd.DataFrame, eps: float = 1e-4) -> dict[str, float]:
    """Population stability index per feature of `X` against the training bins. Rules of thumb:
    < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 major shift."""
    bins = reference_stats.get("bins", reference_stats)
    out = {}
    for col, ref in bins.items():
        if col not in X:
            continue
        edges = np.asarray(ref["edges"], dtype=float)
        expected = np.asarray(ref["fractions"], dtype=float)
        x = X[col].to_numpy(dtype=float)
        counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
        actual = counts / max(x.size, 1)
        e, a = np.maximum(expected, eps), np.maximum(actual, eps)
        out[col] = float(np.sum((a - e) * np.log(a / e)))
    return out


# --- The model --------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    feature_names: list[str]
    booster: xgb.Booster | None  # None when the shipped model is the logistic regression
    calibrator: Calibrator
    metrics: dict
    baseline_metrics: dict
    params: dict
    importance: dict[str, float]
    training_window: dict
    reference_stats: dict  # {"bins": {feature: {"edges", "fractions"}}} for psi()
    healthy_reference: dict[str, float] = field(default_factory=dict)  # median among non-churners
    linear: Any = None  # the standardised logistic regression when it is the shipped model

    @property
    def algorithm(self) -> str:
        return "xgboost" if self.booster is not None else "logistic"

    def values(self, X: pd.DataFrame) -> np.ndarray:
        frame = X.reindex(columns=self.feature_names, fill_value=0.0).astype(float)
        return frame.replace([np.inf, -np.inf], np.nan).fillna(0.0).to_numpy()

    def matrix(self, X: pd.DataFrame) -> xgb.DMatrix:
        return xgb.DMatrix(self.values(X), feature_names=self.feature_names, nthread=1)

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        if self.booster is None:
            return self._linear_proba(self._standardised(self.values(X)))
        return self.booster.predict(self.matrix(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities (columns reindexed to `feature_names`, missing → 0)."""
        if len(X) == 0:
            return np.zeros(0)
        return self.calibrator.transform(self.raw_proba(X))

    def contributions(self, X: pd.DataFrame, approx: bool = False) -> np.ndarray:
        """SHAP contributions (log-odds of the raw model), shape (rows, features + 1 bias)."""
        if len(X) == 0:
            return np.zeros((0, len(self.feature_names) + 1))
        if self.booster is None:
            return self._linear_contributions(self._standardised(self.values(X)))
        return self.booster.predict(self.matrix(X), pred_contribs=True, approx_contribs=approx)

    # The logistic pipeline's own arithmetic (StandardScaler.transform, then
    # LogisticRegression.predict_proba: X·w + b through the logistic function) without sklearn's
    # per-call input validation, which costs about a millisecond: for one real-time row it was
    # most of the model call. Same operations in the same order, so the same numbers (tested).
    def _standardised(self, values: np.ndarray) -> np.ndarray:
        scaler = self.linear[0]
        return (values - scaler.mean_) / scaler.scale_

    def _linear_proba(self, z: np.ndarray) -> np.ndarray:
        regression = self.linear[-1]
        return expit(z @ regression.coef_.T + regression.intercept_)[:, 0]

    def _linear_contributions(self, z: np.ndarray) -> np.ndarray:
        # Exact SHAP of a linear model (independent features): weight × standardised value,
        # the bias being the intercept (the training mean is 0 after standardising).
        regression = self.linear[-1]
        return np.column_stack([z * regression.coef_[0], np.full(len(z), regression.intercept_[0])])

    def row(self, features: Mapping[str, float]) -> np.ndarray:
        """One customer's features (`features.customer_features`) as a 1 × n matrix in the
        model's column order — what `values` gives for a frame (missing → 0, non-finite → 0)."""
        x = np.array([[features.get(name, 0.0) for name in self.feature_names]], dtype=float)
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def predict_one(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Calibrated probability and exact SHAP contributions of one row (`row`): the real-time
        path, one DMatrix for both (`predict_proba` + `contributions` would build two frames)."""
        if self.booster is None:
            z = self._standardised(x)
            raw = self._linear_proba(z)
            contribs = self._linear_contributions(z)
        else:
            matrix = xgb.DMatrix(x, feature_names=self.feature_names, nthread=1)
            raw = self.booster.predict(matrix)
            contribs = self.booster.predict(matrix, pred_contribs=True)
        return float(self.calibrator.transform(raw)[0]), contribs[0]

    def explain(self, X: pd.DataFrame, top_k: int = 3) -> list[list[dict]]:
        """Top causes per row from exact tree SHAP (see `predictions.ml.explain`)."""
        from predictions.ml.explain import causes_from_contributions

        return causes_from_contributions(self.contributions(X), X, self.feature_names, self.healthy_reference, top_k)

    def to_bytes(self) -> bytes:
        state = {k: v for k, v in self.__dict__.items() if k != "booster"}
        state["booster"] = bytes(self.booster.save_raw(raw_format="ubj")) if self.booster is not None else None
        buffer = io.BytesIO()
        pickle.dump({"format": 1, "state": state}, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        """Only for bytes this app wrote itself (pickle must never read untrusted input)."""
        payload = pickle.loads(data)  # noqa: S301 - our own model artefact, stored by the app
        state = dict(payload["state"])
        raw, booster = state.pop("booster"), None
        if raw is not None:
            booster = xgb.Booster()
            booster.load_model(bytearray(raw))
            # A loaded model scores one row at a time (real time) far more often than a book: one
            # thread. With OpenMP's default (every core) a one-row call on a busy 2-core machine
            # waited for a second core: p50 8.6 ms instead of 0.6 ms, measured. `threads()`
            # lends the batch every core.
            booster.set_param({"nthread": 1})
        return cls(booster=booster, **state)

    @contextlib.contextmanager
    def threads(self, n: int = 0) -> Iterator[None]:
        """Let XGBoost use `n` threads (0: every core) inside the block — for whole-book calls."""
        if self.booster is None:
            yield
            return
        self.booster.set_param({"nthread": n})
        try:
            yield
        finally:
            self.booster.set_param({"nthread": 1})


# --- Training ---------------------------------------------------------------------------------


def rolling_cutoffs(as_of: pd.Timestamp, horizon_days: int, n_cutoffs: int, step_days: int) -> list[pd.Timestamp]:
    last = as_utc(as_of) - horizon_days * DAY
    return [last - k * step_days * DAY for k in range(n_cutoffs - 1, -1, -1)]


def _fit_baseline(X_fit, y_fit, X_cal, y_cal, seed: int):
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    lr.fit(X_fit.to_numpy(), y_fit)
    cal = Calibrator("sigmoid").fit(lr.predict_proba(X_cal.to_numpy())[:, 1], y_cal)
    return lr, cal


def train(
    tables: Tables,
    as_of: pd.Timestamp,
    *,
    horizon_days: int = 90,
    n_cutoffs: int = 8,
    step_days: int = 30,
    seed: int = 0,
    params: dict | None = None,
    min_positives: int = 50,
    save_rate: float = M.DEFAULT_SAVE_RATE,
    contact_cost: float = M.DEFAULT_CONTACT_COST,
) -> TrainedModel:
    """Train, calibrate and evaluate a churn model on data up to `as_of` (see module docstring).

    Raises `NotEnoughLabels` when the fit block has fewer than `min_positives` churners (or a
    held-out block has none), and `ValueError` when fewer than 3 cutoffs are usable."""
    as_of = as_utc(as_of)
    if n_cutoffs < 3:
        raise ValueError("need at least 3 cutoffs: fit, calibration and report blocks")
    p = DEFAULT_PARAMS | (params or {})
    cutoffs = rolling_cutoffs(as_of, horizon_days, n_cutoffs, step_days)
    X, y, meta = build_training_set(tables, cutoffs, horizon_days, as_of=as_of)
    used = sorted(meta["cutoff"].unique())
    if len(used) < 3:
        raise NotEnoughHistory(len(used))
    report_cut, cal_cut = used[-1], used[-2]
    fit_cuts = [c for c in used[:-2] if c + horizon_days * DAY <= cal_cut]
    if not fit_cuts:
        raise ValueError("no fit cutoff ends its horizon before the calibration cutoff; add cutoffs")
    fit = meta["cutoff"].isin(fit_cuts).to_numpy()
    cal = (meta["cutoff"] == cal_cut).to_numpy()
    rep = (meta["cutoff"] == report_cut).to_numpy()
    positives = int(y[fit].sum())
    if positives < min_positives:
        raise NotEnoughLabels(positives, min_positives)
    if y[cal].sum() == 0 or y[rep].sum() == 0:
        raise NotEnoughLabels(0, 1)

    features = list(X.columns)
    X_fit, y_fit, X_cal, y_cal, X_rep, y_rep = X[fit], y[fit], X[cal], y[cal], X[rep], y[rep]
    d_fit = xgb.DMatrix(X_fit.to_numpy(), label=y_fit.to_numpy(), feature_names=features, nthread=1)
    d_cal = xgb.DMatrix(X_cal.to_numpy(), label=y_cal.to_numpy(), feature_names=features, nthread=1)
    # Tree depth is the one setting that decides between under- and over-fitting across book
    # sizes; unless the caller fixes it, try each depth and keep the one that ranks the
    # calibration block best (early stopping already watches that block).
    depths = [p["max_depth"]] if params and "max_depth" in params else list(DEPTH_SEARCH)
    tried: dict[int, float] = {}
    booster, best, auc_xgb = None, 0, -1.0
    for depth in depths:
        candidate = xgb.train(
            {k: v for k, v in p.items() if k not in NOT_BOOSTER_PARAMS} | {"max_depth": depth, "seed": seed},
            d_fit,
            num_boost_round=int(p["num_boost_round"]),
            evals=[(d_cal, "calibration")],
            early_stopping_rounds=int(p["early_stopping_rounds"]),
            verbose_eval=False,
        )
        rounds = int(getattr(candidate, "best_iteration", candidate.num_boosted_rounds() - 1))
        candidate = candidate[: rounds + 1]  # keep only the trees early stopping chose
        tried[depth] = M.roc_auc(y_cal.to_numpy(), candidate.predict(d_cal)) or 0.0
        if tried[depth] > auc_xgb:
            booster, best, auc_xgb, p = candidate, rounds, tried[depth], p | {"max_depth": depth}
    calibrator = Calibrator(p["calibration"]).fit(booster.predict(d_cal), y_cal)

    model = TrainedModel(
        feature_names=features,
        booster=booster,
        calibrator=calibrator,
        metrics={},
        baseline_metrics={},
        params={**p, "seed": seed, "best_iteration": best, "horizon_days": horizon_days},
        importance={},
        training_window={},
        reference_stats={"bins": reference_bins(X_fit)},
        healthy_reference={k: float(v) for k, v in X_fit[y_fit.to_numpy() == 0].median().items()},
    )

    # Report block: model and baseline, never tuned on it.
    eval_kw = {
        "mrr": meta.loc[rep, "mrr"].to_numpy(),
        "segment": meta.loc[rep, "plan"].to_numpy(),
        "save_rate": save_rate,
        "contact_cost": contact_cost,
    }
    lr, lr_cal = _fit_baseline(X_fit, y_fit, X_cal, y_cal, seed)
    # Model choice on the calibration block (see the module docstring); never on the report block.
    auc_lr = M.roc_auc(y_cal.to_numpy(), lr.predict_proba(X_cal.to_numpy())[:, 1])
    if (auc_lr or 0.0) > (auc_xgb or 0.0):
        model.booster, model.linear, model.calibrator = None, lr, lr_cal
    model.params |= {
        "algorithm": model.algorithm,
        "selection": {
            "block": "calibration",
            "roc_auc_xgboost": auc_xgb,
            "roc_auc_logistic": auc_lr,
            "roc_auc_by_depth": {str(depth): auc for depth, auc in tried.items()},
        },
    }
    p_rep = model.predict_proba(X_rep)
    p_base = lr_cal.transform(lr.predict_proba(X_rep.to_numpy())[:, 1])
    window = {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon_days,
        "start": used[0].isoformat(),
        "end": report_cut.isoformat(),
        "fit_cutoffs": [c.isoformat() for c in fit_cuts],
        "calibration_cutoff": cal_cut.isoformat(),
        "report_cutoff": report_cut.isoformat(),
        # The two held-out cutoffs (calibration, then report). Only the report one was never used
        # for any fitting decision; compare models on it for the most honest number.
        "validation_cutoffs": [cal_cut.isoformat(), report_cut.isoformat()],
    }
    common = {
        "feature_count": len(features),
        "data_window": {"start": window["start"], "end": window["end"]},
        "train_samples": int(fit.sum()),
        "train_positive_rate": float(y_fit.mean()),
        "calibration_samples": int(cal.sum()),
    }
    model.metrics = M.evaluate(y_rep, p_rep, **eval_kw) | common
    model.metrics["leakage_flags"] = find_label_leakage(X_fit, y_fit, seed=seed)
    model.baseline_metrics = M.evaluate(y_rep, p_base, **eval_kw) | common
    model.training_window = window

    # Global importance: mean |SHAP| on the report block, normalised to sum 1.
    contribs = np.abs(model.contributions(X_rep)[:, :-1]).mean(axis=0)
    total = contribs.sum()
    shares = contribs / total if total > 0 else contribs
    model.importance = {
        f: round(float(s), 6) for f, s in sorted(zip(features, shares, strict=True), key=lambda t: -t[1])
    }
    return model
