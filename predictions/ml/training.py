"""Training: as of a date, validated so that it cannot fool itself, calibrated (ADR 0006).

History books (event facts for most customers): rows are (customer, cutoff), labelled 1 when the
customer churned in (cutoff, cutoff + horizon]; only cutoffs whose horizon ends by `as_of` are
used. Rolling origin: each of the `n_blocks` latest labelled cutoffs is a block, predicted by
models fitted on the cutoffs whose label window ended before it (purged), early-stopped and
calibrated on the latest of those. The shipped model is refitted on every labelled cutoff and
calibrated on the latest one's out-of-fold scores (folds by customer); trees keep the number of
rounds an early-stopped probe found.

Snapshot books (no event history, `features.FeatureSpec.snapshot`): one row per customer, as of
its churn for churners; stratified K-fold cross-validation, out-of-fold calibration.

Either way the logistic regression (log1p counts), XGBoost and the rules are scored on the same
blocks; `choose` keeps the simpler unless the other wins by more than its spread; the card holds
per-block and pooled metrics (bootstrap interval) and the protocol; `risk_bands` sets the risk
levels relative to the base rate. Determinism: fixed seeds, one XGBoost thread.
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
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from predictions.ml import metrics as M
from predictions.ml import rules
from predictions.ml.features import DAY, FeatureSpec, as_utc, build_features, churned_flags, is_count, learn_spec
from predictions.ml.tables import Tables, as_frame

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 3,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5.0,
    "lambda": 1.0,
    "nthread": 1,
    "num_boost_round": 600,
    "early_stopping_rounds": 50,
    "calibration": "sigmoid",  # or "isotonic"
    "algorithm": None,  # None: chosen on the validation blocks; or "logistic" / "xgboost"
}
NOT_BOOSTER_PARAMS = ("num_boost_round", "early_stopping_rounds", "calibration", "algorithm")
LEAKAGE_AUC = 0.99
# L2 strength of the logistic model: strong enough for a book with a few dozen churners per block
# and some hundred features; on large books the data outweighs it.
LOGISTIC_C = 0.1
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
        "customers": ("signup_date", "churned_at", "last_login"),
        "sessions": ("started_at",),
        "tickets": ("opened_at", "solved_at"),
        "nps": ("responded_at",),
        "billing": ("occurred_at",),
    }
    latest = []
    for name, names in cols.items():
        frame = getattr(tables, name)
        for col in names:
            if frame is not None and col in frame:
                values = pd.to_datetime(frame[col], utc=True, errors="coerce")
                if values.notna().any():
                    latest.append(as_utc(values.max()))
    if not latest:
        raise ValueError("the tables hold no dated facts")
    return max(latest)


def build_training_set(
    tables: Tables,
    cutoffs: list[pd.Timestamp],
    horizon_days: int = 90,
    *,
    as_of: pd.Timestamp | None = None,
    spec: FeatureSpec | None = None,
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """X (features as of each cutoff, stacked), y (churned in (cutoff, cutoff + horizon]) and
    meta (customer_id, cutoff, plan, mrr), sharing one RangeIndex. Cutoffs whose horizon ends
    after `as_of` (default: the latest fact date) are skipped: their labels are not observable.
    Customers marked inactive without a churn date are left out (their label is unknown)."""
    as_of = latest_fact_date(tables) if as_of is None else as_utc(as_of)
    spec = learn_spec(tables, as_of) if spec is None else spec
    horizon = horizon_days * DAY
    by_id = as_frame(tables.customers).set_index("customer_id")
    churned_at = pd.to_datetime(by_id["churned_at"], utc=True, errors="coerce")
    undated = pd.Series(churned_flags(tables.customers, as_of) & churned_at.isna().to_numpy(), index=by_id.index)
    plans = by_id["plan"].astype(str)
    xs, ys, metas = [], [], []
    for cutoff in sorted(as_utc(c) for c in cutoffs):
        if cutoff + horizon > as_of:
            log.info("skipping cutoff %s: its %s-day horizon ends after %s", cutoff, horizon_days, as_of)
            continue
        X = build_features(tables, cutoff, spec)
        X = X.loc[~undated.reindex(X.index, fill_value=False).to_numpy()]
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


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """log1p of counts, sign kept (a change in counts can be negative)."""
    return np.sign(values) * np.log1p(np.abs(values))


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
    spec: FeatureSpec | None = None  # what the features were learned from (None: learn again)
    log_columns: np.ndarray | None = None  # which inputs the linear model reads through log1p
    rules_metrics: dict = field(default_factory=dict)
    rules_risk_thresholds: dict = field(default_factory=dict)  # bands should the rules stay champion

    @property
    def algorithm(self) -> str:
        return "xgboost" if self.booster is not None else "logistic"

    def values(self, X: pd.DataFrame) -> np.ndarray:
        if list(X.columns) == self.feature_names:  # as `features` builds them: no reindexing
            return np.nan_to_num(X.to_numpy(dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
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

    # The logistic pipeline's own arithmetic (log1p of the counts, StandardScaler.transform, then
    # LogisticRegression.predict_proba: X·w + b through the logistic function) without sklearn's
    # per-call input validation, which costs about a millisecond per call. Same operations in
    # the same order, so the same numbers (tested).
    def _standardised(self, values: np.ndarray) -> np.ndarray:
        if self.log_columns is not None:
            values = values.copy()
            values[:, self.log_columns] = signed_log1p(values[:, self.log_columns])
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
        """One customer's features as a 1 × n matrix in the model's column order — what `values`
        gives for a frame (missing → 0, non-finite → 0)."""
        x = np.array([[features.get(name, 0.0) for name in self.feature_names]], dtype=float)
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def predict_one(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Calibrated probability and exact SHAP contributions of one row (`row`): one DMatrix for
        both (`predict_proba` + `contributions` would build two)."""
        if self.booster is None:
            z = self._standardised(x)
            raw = self._linear_proba(z)
            contribs = self._linear_contributions(z)
        else:
            matrix = xgb.DMatrix(x, feature_names=self.feature_names, nthread=1)
            raw = self.booster.predict(matrix)
            contribs = self.booster.predict(matrix, pred_contribs=True)
        return float(self.calibrator.transform(raw)[0]), contribs[0]

    def features(self, tables: Tables, as_of: pd.Timestamp) -> pd.DataFrame:
        """The customers to score at `as_of`, with the features this model was trained on."""
        return build_features(tables, as_of, self.spec)

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


def _log_mask(features: list[str]) -> np.ndarray:
    return np.array([is_count(name) for name in features], dtype=bool)


def fit_logistic(X: pd.DataFrame, y, seed: int = 0) -> tuple[Any, np.ndarray]:
    """The reference and candidate linear model: counts through log1p, standardised, L2."""
    mask = _log_mask(list(X.columns))
    values = X.to_numpy(dtype=float).copy()
    values[:, mask] = signed_log1p(values[:, mask])
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=3000, random_state=seed))
    lr.fit(values, np.asarray(y, dtype=int))
    return lr, mask


def logistic_reference(X: pd.DataFrame, y, seed: int = 0) -> TrainedModel:
    """The plain reference to compare against (backtest, bench): `fit_logistic` on (X, y), read
    through its own probabilities, without the shipped models' early stop or calibration step."""
    lr, mask = fit_logistic(X, y, seed)
    return TrainedModel(list(X.columns), None, Calibrator(), {}, {}, {}, {}, {}, {}, linear=lr, log_columns=mask)


def _fit_baseline(X_fit, y_fit, X_cal, y_cal, seed: int):
    """A logistic model and its calibrator (kept for tools that build one by hand)."""
    lr, mask = fit_logistic(X_fit, y_fit, seed)
    probe = TrainedModel(list(X_fit.columns), None, Calibrator(), {}, {}, {}, {}, {}, {}, linear=lr, log_columns=mask)
    cal = Calibrator("sigmoid").fit(probe.raw_proba(X_cal), y_cal)
    return lr, cal


def _booster_params(p: dict, seed: int) -> dict:
    return {k: v for k, v in p.items() if k not in NOT_BOOSTER_PARAMS} | {"seed": seed}


def fit_xgboost(X: pd.DataFrame, y, X_stop: pd.DataFrame, y_stop, p: dict, seed: int) -> xgb.Booster:
    """Boosted trees, early-stopped on (X_stop, y_stop) and cut at the best round."""
    features = list(X.columns)
    d_fit = xgb.DMatrix(X.to_numpy(dtype=float), label=np.asarray(y), feature_names=features, nthread=1)
    d_stop = xgb.DMatrix(X_stop.to_numpy(dtype=float), label=np.asarray(y_stop), feature_names=features, nthread=1)
    booster = xgb.train(
        _booster_params(p, seed),
        d_fit,
        num_boost_round=int(p["num_boost_round"]),
        evals=[(d_stop, "stop")],
        early_stopping_rounds=int(p["early_stopping_rounds"]),
        verbose_eval=False,
    )
    rounds = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    return booster[: rounds + 1]


def _candidate(algorithm: str, X, y, X_stop, y_stop, p: dict, seed: int) -> TrainedModel:
    """One candidate fitted on (X, y), early-stopped (trees) and calibrated on (X_stop, y_stop)."""
    features = list(X.columns)
    model = TrainedModel(features, None, Calibrator(p["calibration"]), {}, {}, {}, {}, {}, {})
    if algorithm == "xgboost":
        model.booster = fit_xgboost(X, y, X_stop, y_stop, p, seed)
    else:
        model.linear, model.log_columns = fit_logistic(X, y, seed)
    model.calibrator.fit(model.raw_proba(X_stop), np.asarray(y_stop, dtype=int))
    return model


CANDIDATES = ("logistic", "xgboost")  # simplest first: ties go to it


def choose(block_aucs: dict[str, list[float]], margin: float = 0.005) -> tuple[str, dict]:
    """The candidate to ship: the simplest unless a more complex one ranks better on the blocks
    by more than `margin` and by more than the standard error of the paired differences."""
    chosen = CANDIDATES[0]
    detail = {}
    for challenger in CANDIDATES[1:]:
        diffs = np.array(block_aucs[challenger]) - np.array(block_aucs[chosen])
        se = float(diffs.std(ddof=1) / np.sqrt(diffs.size)) if diffs.size > 1 else 0.0
        wins = bool(diffs.mean() > max(margin, se))
        detail[f"{challenger}_vs_{chosen}"] = {"mean_gain": float(diffs.mean()), "se": se, "wins": wins}
        if wins:
            chosen = challenger
    return chosen, detail


DEFAULT_BANDS = {"top_share": 0.10, "high_multiple": 3.0, "medium_multiple": 1.5}


def risk_bands(p, y, rule: Mapping[str, float] | None = None) -> dict:
    """Risk levels relative to the book's churn rate, from calibrated probabilities `p` of a
    population whose outcomes are `y`: high = the top `top_share` of risk or at least
    `high_multiple` x the base rate, medium at least `medium_multiple` x the base rate. Fixed
    bands (0.5 / 0.8) mean nothing on a 6 % book: they would put almost no churner above low."""
    rule = DEFAULT_BANDS | dict(rule or {})
    base = float(np.mean(y))
    top = float(np.quantile(np.asarray(p, dtype=float), 1 - rule["top_share"]))
    high = min(top, rule["high_multiple"] * base)
    medium = min(rule["medium_multiple"] * base, high)
    return {"medium": round(medium, 4), "high": round(high, 4), "base_rate": round(base, 4), "rule": rule}


def rank_bands(score, y, rule: Mapping[str, float] | None = None) -> dict:
    """Risk levels for a score that is not a calibrated probability (the rules baseline, when it
    ranks better than the trained model): high = its top `top_share` of customers, medium the
    next as many. Its raw 0.5 / 0.8 bands can leave a whole book "low" (or put half of it "high")."""
    rule = DEFAULT_BANDS | dict(rule or {})
    score = np.asarray(score, dtype=float)
    high = float(np.quantile(score, 1 - rule["top_share"]))
    medium = min(float(np.quantile(score, 1 - 2 * rule["top_share"])), high)
    base = float(np.mean(y))
    return {"medium": round(medium, 4), "high": round(high, 4), "base_rate": round(base, 4), "rule": rule}


def block_figures(y, p) -> dict:
    """One validation block's figures: `metrics.headline` and the ROC AUC's 95 % interval (DeLong),
    so the model card shows each block with its uncertainty."""
    return M.headline(y, p) | {"roc_auc_ci": M.delong_auc_ci(y, p)}


def _band_tables(model: TrainedModel, evaluation: dict) -> None:
    """Precision and recall at the risk bands' own thresholds on the pooled validation rows, for
    the shipped model and the rules: the bands are chosen after the card's fixed grid, and the
    model card shows what each band would catch without recomputing anything per page view."""
    for metrics, name, bands in (
        (model.metrics, model.algorithm, model.params["risk_thresholds"]),
        (model.rules_metrics, "rules", model.rules_risk_thresholds),
    ):
        cuts = {level: bands[level] for level in ("medium", "high")}
        rows = M.threshold_table(evaluation["y"], evaluation[name], evaluation["mrr"], thresholds=cuts.values())
        metrics["band_thresholds"] = [{"band": level} | row for level, row in zip(cuts, rows, strict=True)]


def _summary(blocks: list[dict], name: str) -> dict:
    out = {}
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "lift_at_10pct", "ece"):
        values = [b[name][key] for b in blocks if b[name].get(key) is not None]
        if values:
            out[key] = float(np.mean(values))
            out[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def train(
    tables: Tables,
    as_of: pd.Timestamp,
    *,
    horizon_days: int = 90,
    n_cutoffs: int = 8,
    step_days: int = 30,
    n_blocks: int = 3,
    folds: int = 5,
    seed: int = 0,
    params: dict | None = None,
    min_positives: int = 50,
    save_rate: float = M.DEFAULT_SAVE_RATE,
    contact_cost: float = M.DEFAULT_CONTACT_COST,
    bands: Mapping[str, float] | None = None,
) -> TrainedModel:
    """Train, validate and calibrate a churn model on data up to `as_of` (see module docstring).

    Raises `NotEnoughLabels` when there are fewer than `min_positives` churners to fit on (or an
    evaluation block has none) and `NotEnoughHistory` when no rolling block can be formed."""
    as_of = as_utc(as_of)
    p = DEFAULT_PARAMS | (params or {})
    spec = learn_spec(tables, as_of)
    if spec.snapshot:
        model = _train_snapshot(tables, as_of, spec, p, folds, seed, min_positives, save_rate, contact_cost)
        evaluation = model.params.pop("_evaluation")
        model.params["risk_thresholds"] = risk_bands(evaluation[model.algorithm], evaluation["y"], bands)
        model.rules_risk_thresholds = rank_bands(evaluation["rules"], evaluation["y"], bands)
        _band_tables(model, evaluation)
        return model
    cutoffs = rolling_cutoffs(as_of, horizon_days, n_cutoffs, step_days)
    X, y, meta = build_training_set(tables, cutoffs, horizon_days, as_of=as_of, spec=spec)
    used = sorted(meta["cutoff"].unique())
    horizon = horizon_days * DAY
    # Rolling origin: each recent cutoff is a block, predicted by models fitted on cutoffs whose
    # label window ended by then (purged), early-stopped and calibrated on the latest of them.
    plans: list[tuple[pd.Timestamp, list, pd.Timestamp]] = []
    for block in used[-n_blocks:]:
        before = [c for c in used if c + horizon <= block]
        if len(before) >= 2:
            plans.append((block, before[:-1], before[-1]))
    if not plans:
        raise NotEnoughHistory(len(used))
    final_fit = [c for c in used if c + horizon <= used[-1]]
    if int(y[meta["cutoff"].isin(final_fit).to_numpy()].sum()) < min_positives:
        raise NotEnoughLabels(int(y[meta["cutoff"].isin(final_fit).to_numpy()].sum()), min_positives)

    rows = {c: (meta["cutoff"] == c).to_numpy() for c in used}
    blocks: list[dict] = []
    aucs: dict[str, list[float]] = {name: [] for name in (*CANDIDATES, "rules")}
    pooled: dict[str, list] = {name: [] for name in (*CANDIDATES, "rules", "y", "rows")}
    for block, fit_cuts, stop_cut in plans:
        fit = meta["cutoff"].isin(fit_cuts).to_numpy()
        stop, test = rows[stop_cut], rows[block]
        if y[test].sum() == 0 or y[stop].sum() == 0 or y[fit].sum() == 0:
            continue
        entry: dict[str, Any] = {"block": block.isoformat(), "fit_cutoffs": len(fit_cuts), "stop": stop_cut.isoformat()}
        predictions = {
            name: _candidate(name, X[fit], y[fit], X[stop], y[stop], p, seed).predict_proba(X[test])
            for name in CANDIDATES
        }
        predictions["rules"] = rules.rules_probability(X[test])
        for name, proba in predictions.items():
            entry[name] = block_figures(y[test], proba)
            aucs[name].append(entry[name]["roc_auc"])
            pooled[name].append(proba)
        pooled["y"].append(y[test].to_numpy())
        pooled["rows"].append(np.flatnonzero(test))
        blocks.append(entry)
    if not blocks:
        raise NotEnoughLabels(0, 1)
    algorithm, selection = choose({k: v for k, v in aucs.items() if k in CANDIDATES})
    algorithm = p.get("algorithm") or algorithm  # a caller may fix it (tests, benchmarks)

    # The shipped model: refitted on every labelled cutoff (the blocks chose the algorithm; the
    # newest rows rank best and the plain reference uses them all), calibrated on the latest
    # cutoff's out-of-fold scores (folds by customer).
    fit = meta["cutoff"].isin(final_fit).to_numpy()
    stop = rows[used[-1]]
    model, latest_calibrated = _refit_on_everything(
        algorithm, X, y, meta["customer_id"].to_numpy(), stop, (fit, stop), p, folds, seed
    )
    model.spec = spec
    X_fit, y_fit = X, y
    model.reference_stats = {"bins": reference_bins(X_fit)}
    model.healthy_reference = {k: float(v) for k, v in X_fit[y_fit.to_numpy() == 0].median().items()}
    window = {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon_days,
        "protocol": "rolling-origin",
        "start": used[0].isoformat(),
        "end": used[-1].isoformat(),
        "fit_cutoffs": [c.isoformat() for c in used],
        "calibration_cutoff": used[-1].isoformat(),
        "calibration": f"out of fold ({folds} folds by customer) on the latest cutoff",
        "validation_cutoffs": [b["block"] for b in blocks],
    }
    model.params = {**p, "seed": seed, "horizon_days": horizon_days, "algorithm": algorithm}
    model.params["selection"] = {"blocks": len(blocks), "roc_auc_by_block": aucs, **selection}
    model.params["feature_spec"] = spec.as_json()
    segments = meta.loc[np.concatenate(pooled["rows"]), ["mrr", "plan"]]
    evaluation = {
        "y": np.concatenate(pooled["y"]),
        "mrr": segments["mrr"].to_numpy(),
        "segment": segments["plan"].to_numpy(),
        **{name: np.concatenate(pooled[name]) for name in (*CANDIDATES, "rules")},
    }
    _card(model, blocks, algorithm, window, evaluation, X_fit, y_fit, X[stop], save_rate, contact_cost)
    # Bands from the shipped model's out-of-fold probabilities on its latest labelled cutoff.
    model.params["risk_thresholds"] = risk_bands(latest_calibrated, y[stop], bands)
    model.rules_risk_thresholds = rank_bands(evaluation["rules"], evaluation["y"], bands)
    _band_tables(model, evaluation)
    return model


def _refit_on_everything(
    algorithm: str,
    X: pd.DataFrame,
    y: pd.Series,
    customer_ids: np.ndarray,
    calibrate_on: np.ndarray,
    probe: tuple[np.ndarray, np.ndarray],
    p: dict,
    folds: int,
    seed: int,
) -> tuple[TrainedModel, np.ndarray]:
    """`algorithm` fitted on all of (X, y), and the calibrated out-of-fold probabilities of the
    `calibrate_on` rows its calibrator was fitted on.

    Out of fold: each customer's rows are scored by a model fitted without that customer (any
    cutoff). Trees take their number of rounds from an early-stopped probe on `probe` (the
    fit and stop rows of the last validation plan)."""
    features = list(X.columns)
    rounds = 0
    if algorithm == "xgboost":
        probe_fit, probe_stop = probe
        early = fit_xgboost(X[probe_fit], y[probe_fit], X[probe_stop], y[probe_stop], p, seed)
        rounds = early.num_boosted_rounds()

    def fitted(rows: np.ndarray) -> TrainedModel:
        model = TrainedModel(features, None, Calibrator(p["calibration"]), {}, {}, {}, {}, {}, {})
        if algorithm == "xgboost":
            matrix = xgb.DMatrix(
                X[rows].to_numpy(dtype=float), label=y[rows].to_numpy(), feature_names=features, nthread=1
            )
            model.booster = xgb.train(_booster_params(p, seed), matrix, num_boost_round=rounds)
        else:
            model.linear, model.log_columns = fit_logistic(X[rows], y[rows], seed)
        return model

    unique, position = np.unique(customer_ids, return_inverse=True)
    fold_of = (np.random.default_rng(seed).permutation(len(unique)) % folds)[position]
    raw = np.zeros(len(y))
    for k in range(folds):
        mine = calibrate_on & (fold_of == k)
        if mine.any():
            raw[mine] = fitted(fold_of != k).raw_proba(X[mine])
    model = fitted(np.ones(len(y), dtype=bool))
    labels = np.asarray(y[calibrate_on], dtype=int)
    model.calibrator.fit(raw[calibrate_on], labels)
    return model, model.calibrator.transform(raw[calibrate_on])


def _card(model, blocks, algorithm, window, evaluation, X_fit, y_fit, X_report, save_rate, contact_cost) -> None:
    """The model card: metrics of every candidate and the rules on the same out-of-sample rows
    (pooled over the blocks, plus each block's own), the protocol, and the global importance."""
    features = model.feature_names
    common = {
        "feature_count": len(features),
        "data_window": {"start": window["start"], "end": window["end"]},
        "train_samples": len(X_fit),
        "train_positive_rate": float(np.mean(y_fit)),
        "protocol": window["protocol"],
    }
    kw = {
        "mrr": evaluation["mrr"],
        "segment": evaluation["segment"],
        "save_rate": save_rate,
        "contact_cost": contact_cost,
    }

    def card(name: str) -> dict:
        pooled = M.evaluate(evaluation["y"], evaluation[name], **kw)
        pooled["roc_auc_ci"] = M.bootstrap_auc_ci(evaluation["y"], evaluation[name])
        spread = {f"block_{k}": v for k, v in _summary(blocks, name).items()}
        return pooled | spread | common

    model.metrics = card(algorithm) | {"blocks": blocks}
    model.metrics["leakage_flags"] = find_label_leakage(X_fit, y_fit)
    model.baseline_metrics = card("logistic")
    model.rules_metrics = card("rules") | {"blocks": blocks}
    model.training_window = window
    contribs = np.abs(model.contributions(X_report)[:, :-1]).mean(axis=0)
    total = contribs.sum()
    shares = contribs / total if total > 0 else contribs
    model.importance = {
        f: round(float(s), 6) for f, s in sorted(zip(features, shares, strict=True), key=lambda t: -t[1])
    }


def _train_snapshot(
    tables: Tables,
    as_of: pd.Timestamp,
    spec: FeatureSpec,
    p: dict,
    folds: int,
    seed: int,
    min_positives: int,
    save_rate: float,
    contact_cost: float,
) -> TrainedModel:
    """A book without event history (its customers table is all there is, churn timing unknown
    or meaningless): stratified K-fold cross-validation over its customers, each churner seen as
    of its churn. Candidates are compared fold by fold, probabilities calibrated out of fold."""
    X = build_features(tables, as_of, spec, population="all")
    by_id = as_frame(tables.customers).set_index("customer_id")
    churned = pd.Series(churned_flags(tables.customers, as_of), index=by_id.index)
    ids = X.index.to_numpy()
    y = pd.Series(churned.reindex(ids).to_numpy().astype(int), name="churned")
    X = X.reset_index(drop=True)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < max(min_positives, folds):
        raise NotEnoughLabels(min(positives, negatives), max(min_positives, folds))
    # A column that alone separates churners almost perfectly is an artefact of how the snapshot
    # was taken (a field only churned accounts have), not a signal: it is left out and named.
    leaks = find_label_leakage(X, y, seed=seed)
    X = X.drop(columns=list(leaks))
    X = X.loc[:, X.nunique() > 1]
    features = list(X.columns)
    plan = by_id["plan"].astype(str).reindex(ids).to_numpy()

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    raw = {name: np.zeros(len(y)) for name in CANDIDATES}
    fold_of = np.zeros(len(y), dtype=int)
    rounds = []
    for k, (train_idx, test_idx) in enumerate(splitter.split(X, y)):
        fold_of[test_idx] = k
        inner_fit, inner_stop = next(
            StratifiedKFold(n_splits=5, shuffle=True, random_state=seed + k).split(train_idx, y.iloc[train_idx])
        )
        fit_rows, stop_rows = train_idx[inner_fit], train_idx[inner_stop]
        booster = fit_xgboost(X.iloc[fit_rows], y.iloc[fit_rows], X.iloc[stop_rows], y.iloc[stop_rows], p, seed)
        rounds.append(booster.num_boosted_rounds())
        probe = TrainedModel(features, booster, Calibrator(), {}, {}, {}, {}, {}, {})
        raw["xgboost"][test_idx] = probe.raw_proba(X.iloc[test_idx])
        probe.booster = None
        probe.linear, probe.log_columns = fit_logistic(X.iloc[train_idx], y.iloc[train_idx], seed)
        raw["logistic"][test_idx] = probe.raw_proba(X.iloc[test_idx])
    raw["rules"] = rules.rules_probability(X)

    # Calibrated out of fold: each fold's probabilities through a calibrator fitted on the
    # other folds' out-of-fold scores.
    calibrated = {}
    for name in CANDIDATES:
        out = np.zeros(len(y))
        for k in range(folds):
            mine = fold_of == k
            out[mine] = Calibrator(p["calibration"]).fit(raw[name][~mine], y[~mine]).transform(raw[name][mine])
        calibrated[name] = out
    calibrated["rules"] = raw["rules"]

    blocks: list[dict[str, Any]] = []
    aucs: dict[str, list[float]] = {name: [] for name in (*CANDIDATES, "rules")}
    for k in range(folds):
        mine = fold_of == k
        entry: dict[str, Any] = {"block": f"fold {k + 1}/{folds}"}
        for name in (*CANDIDATES, "rules"):
            entry[name] = block_figures(y[mine], calibrated[name][mine])
            aucs[name].append(entry[name]["roc_auc"])
        blocks.append(entry)
    algorithm, selection = choose({k: v for k, v in aucs.items() if k in CANDIDATES})
    algorithm = p.get("algorithm") or algorithm  # a caller may fix it (tests, benchmarks)

    model = TrainedModel(features, None, Calibrator(p["calibration"]), {}, {}, {}, {}, {}, {}, spec=spec)
    if algorithm == "xgboost":
        d_all = xgb.DMatrix(X.to_numpy(dtype=float), label=y.to_numpy(), feature_names=features, nthread=1)
        model.booster = xgb.train(
            _booster_params(p, seed), d_all, num_boost_round=max(1, int(np.median(rounds) * folds / (folds - 1)))
        )
    else:
        model.linear, model.log_columns = fit_logistic(X, y, seed)
    model.calibrator.fit(raw[algorithm], y.to_numpy())
    model.reference_stats = {"bins": reference_bins(X)}
    model.healthy_reference = {k: float(v) for k, v in X[y.to_numpy() == 0].median().items()}
    window = {
        "as_of": as_of.isoformat(),
        "horizon_days": None,
        "protocol": f"stratified {folds}-fold cross-validation (snapshot book: no event history)",
        "start": as_of.isoformat(),
        "end": as_of.isoformat(),
        "validation_cutoffs": [],
        "left_out_features": leaks,
    }
    model.params = {**p, "seed": seed, "algorithm": algorithm, "feature_spec": spec.as_json()}
    model.params["selection"] = {"blocks": folds, "roc_auc_by_block": aucs, **selection}
    evaluation = {"y": y.to_numpy(), "mrr": X["mrr"].to_numpy(), "segment": plan, **calibrated}
    _card(model, blocks, algorithm, window, evaluation, X, y, X, save_rate, contact_cost)
    model.params["_evaluation"] = evaluation
    return model


def same_rows_auc(model: TrainedModel, tables: Tables, window: Mapping) -> float | None:
    """ROC AUC of `model` on the rows another model's card was validated on (`window`: its
    `training_window`), with this model's own features: how a champion and a challenger are
    compared on the same customers and dates."""
    as_of = as_utc(window["as_of"])
    spec = model.spec or learn_spec(tables, as_of)
    if window.get("protocol", "").startswith("stratified"):
        X = build_features(tables, as_of, spec, population="all")
        y = churned_flags(as_frame(tables.customers).set_index("customer_id").loc[X.index].reset_index(), as_of)
    else:
        cutoffs = [pd.Timestamp(c) for c in window.get("validation_cutoffs", [])]
        if not cutoffs:
            return None
        X, y, _ = build_training_set(tables, cutoffs, int(window.get("horizon_days") or 90), as_of=as_of, spec=spec)
    return M.roc_auc(y, model.predict_proba(X))
