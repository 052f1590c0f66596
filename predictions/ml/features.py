"""Point-in-time customer features: `build_features(tables, as_of)` → one float row per customer.

Rules every feature follows
---------------------------
* Point in time: only facts whose timestamp is ≤ `as_of` are read (sessions by `started_at`,
  tickets by `opened_at`/`solved_at`, NPS by `responded_at`, billing by `occurred_at`, session
  actions by their session's start). A window "last 30 days" is (as_of − 30 d, as_of].
* Population: customers that signed up by `as_of` and had not churned by it (`churned_at` NaT or
  > as_of, and not marked inactive without a date). Whether and when a customer churns later
  never changes a row.
* Vectorised: every feature is a `np.bincount`/`groupby` over whole frames; no loop per customer.
* No NaN: empty histories get documented neutral values (listed below) and, where "no data"
  itself carries information, a `*_missing` / `never_active` indicator.

Neutral fill values
-------------------
* counts, sums and differences over an empty window: 0;
* `days_since_last_session` with no session yet: days since signup (capped at 365) and
  `never_active = 1`;
* `actions_per_session_30d` without a session in 30 days: 0;
* `usage_ratio_30d` is (sessions last 30 d + 1) / (sessions the 30 d before + 1), so 1 when both are 0;
* `nps_latest` with no answer: 7 (a passive) and `nps_missing = 1`; `nps_change` with fewer than
  two answers: 0;
* `mrr`: the latest `mrr_after` ≤ as_of, else `customers.mrr`. Caveat: `customers.mrr` is today's
  value, so for a past cutoff it can reflect a later plan change of a customer whose billing
  history has no `mrr_after` before the cutoff (send the plan changes as billing rows to avoid it);
* `mrr_change_90d_pct`: relative change of that MRR since as_of − 90 d (0 when unknown);
* `plan_<name>`: one-hot of `customers.plan` (a static attribute, the same caveat as `mrr`), the
  levels learnt at training (`FeatureSpec`, names sanitised), rarer ones as `plan_other`;
* `act_<type>__30d|__90d|__per_month|__days_since`: the session action types learnt at training.

Snapshot columns (`feature_usage`, `nps_score`, `support_tickets`, `last_login`)
--------------------------------------------------------------------------------
They are today's values, not time series: at a past cutoff they would leak the future (a churned
customer's counters stop at churn). A book with event history never reads them as model inputs
(`usage_features` gives the `fu_<key>` counters to the health score only). A snapshot book — fewer
than half the customers with any dated event — has nothing else: `FeatureSpec.snapshot` makes
them the features (recency from `last_login`, NPS from `nps_score`, open tickets from
`support_tickets`, numeric usage keys as `fu_<key>`, text keys as `cat_<key>__<level>`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from predictions.ml.tables import Columns, Table, Tables, as_frame

type ArrayLike = np.ndarray | ExtensionArray  # a column's values

DAY = pd.Timedelta(days=1)
RECENCY_CAP_DAYS = 365.0
TENURE_CAP_DAYS = 3650.0
NPS_NEUTRAL = 7.0
RISKY_PRIORITIES = ("high", "urgent")

# Cause names; each must be a key of predictions.causes.CAUSES (a test checks it). Kept as plain
# strings here so the ML core stays importable without the Django app.
LOW_ENGAGEMENT = "Low engagement"
DECLINING_USAGE = "Declining usage"
LOW_ADOPTION = "Low feature adoption"
SUPPORT = "Support issues"
SATISFACTION = "Low satisfaction"
PAYMENT = "Payment problems"
ONBOARDING = "Onboarding incomplete"
# Context features move the score but are never reported as a cause (plan, MRR, NPS not
# answered): they are not something a CSM can fix.
CONTEXT = ""


@dataclass(frozen=True)
class FeatureInfo:
    label: str
    category: str  # product | billing | support | competition | other
    cause: str  # a name in predictions.causes.CAUSES, or "" for context features
    higher_is_riskier: bool
    fmt: str  # format string for one value, e.g. "{:.0f} days"

    def format(self, value: float) -> str:
        try:
            return self.fmt.format(value)
        except (ValueError, TypeError):
            return str(value)


def _i(label: str, category: str, cause: str, higher: bool, fmt: str = "{:.0f}") -> FeatureInfo:
    return FeatureInfo(label, category, cause, higher, fmt)


FEATURES: dict[str, FeatureInfo] = {
    # Recency and tenure.
    "days_since_last_session": _i("Days since last login", "product", LOW_ENGAGEMENT, True, "{:.0f} days"),
    "never_active": _i("Never logged in", "product", ONBOARDING, True, "{:.0f}"),
    "tenure_days": _i("Account age", "product", ONBOARDING, False, "{:.0f} days"),
    # Frequency.
    "sessions_7d": _i("Sessions in the last 7 days", "product", LOW_ENGAGEMENT, False),
    "sessions_30d": _i("Sessions in the last 30 days", "product", LOW_ENGAGEMENT, False),
    "sessions_90d": _i("Sessions in the last 90 days", "product", LOW_ENGAGEMENT, False),
    "sessions_per_month": _i("Sessions per month since signup", "product", LOW_ENGAGEMENT, False, "{:.1f}"),
    "pages_30d": _i("Pages viewed in the last 30 days", "product", LOW_ENGAGEMENT, False),
    "pages_90d": _i("Pages viewed in the last 90 days", "product", LOW_ENGAGEMENT, False),
    # Trend.
    "usage_ratio_30d": _i("Sessions vs the previous 30 days", "product", DECLINING_USAGE, False, "{:.0%}"),
    "sessions_ratio_30_90d": _i("Sessions in 30 days vs the 90-day pace", "product", DECLINING_USAGE, False, "{:.0%}"),
    "sessions_change_30d": _i(
        "Change in sessions vs the previous 30 days", "product", DECLINING_USAGE, False, "{:+.0f}"
    ),
    "pages_change_30d": _i(
        "Change in pages viewed vs the previous 30 days", "product", DECLINING_USAGE, False, "{:+.0f}"
    ),
    # Breadth.
    "actions_per_session_30d": _i("Actions per session (30 days)", "product", LOW_ADOPTION, False, "{:.1f}"),
    # Support.
    "tickets_30d": _i("Support tickets in the last 30 days", "support", SUPPORT, True),
    "tickets_90d": _i("Support tickets in the last 90 days", "support", SUPPORT, True),
    "tickets_per_month": _i("Support tickets per month since signup", "support", SUPPORT, True, "{:.1f}"),
    "open_tickets": _i("Open support tickets", "support", SUPPORT, True),
    "urgent_tickets_90d": _i("High/urgent tickets in the last 90 days", "support", SUPPORT, True),
    "tickets_change_30d": _i("Change in tickets vs the previous 30 days", "support", SUPPORT, True, "{:+.0f}"),
    # NPS.
    "nps_latest": _i("Latest NPS score", "other", SATISFACTION, False, "{:.0f}/10"),
    "nps_change": _i("Change in NPS score", "other", SATISFACTION, False, "{:+.0f}"),
    "nps_mean": _i("Mean NPS score", "other", SATISFACTION, False, "{:.1f}/10"),
    "nps_count": _i("NPS answers", "other", CONTEXT, False),
    "nps_days_since": _i("Days since the last NPS answer", "other", CONTEXT, True, "{:.0f} days"),
    "nps_missing": _i("No NPS answer", "other", CONTEXT, True),
    # Billing.
    "mrr": _i("Monthly recurring revenue", "billing", CONTEXT, False, "{:,.0f}"),
    "mrr_change_90d_pct": _i("MRR change in the last 90 days", "billing", PAYMENT, False, "{:+.0%}"),
    "payment_failures_30d": _i("Failed payments in the last 30 days", "billing", PAYMENT, True),
    "payment_failures_90d": _i("Failed payments in the last 90 days", "billing", PAYMENT, True),
    "downgraded_90d": _i("Downgraded in the last 90 days", "billing", PAYMENT, True),
}

FIXED_FEATURES: tuple[str, ...] = tuple(FEATURES)
# Counts, sums and rates: never negative, heavy-tailed; a linear model reads them through log1p.
COUNT_SUFFIXES = ("_7d", "_30d", "_90d", "_per_month", "_count", "_days_since", "_tickets", "_lifetime")
ACTION_PREFIX, USAGE_PREFIX, PLAN_PREFIX, LEVEL_PREFIX = "act_", "fu_", "plan_", "cat_"
MAX_ACTION_TYPES = 12
# The windows (days before as_of) action types are counted over, beside their whole history.
ACTION_WINDOWS_DAYS = (30, 90)
MAX_LEVELS = 12


@functools.lru_cache(maxsize=4096)  # a pure function of the name, asked for every row's causes
def feature_info(name: str) -> FeatureInfo:
    """Description of a feature, including the learned ones (`plan_`, `fu_`, `act_`, `cat_`)."""
    if name in FEATURES:
        return FEATURES[name]
    if name.startswith(PLAN_PREFIX):
        return FeatureInfo(f"On the {name[len(PLAN_PREFIX) :]} plan", "billing", CONTEXT, False, "{:.0f}")
    if name.startswith(USAGE_PREFIX):
        label = name[len(USAGE_PREFIX) :].replace("_", " ")
        return FeatureInfo(f"Usage: {label}", "product", LOW_ADOPTION, False, "{:,.0f}")
    if name.startswith(ACTION_PREFIX):
        body, _, window = name[len(ACTION_PREFIX) :].rpartition("__")
        label = body.replace("_", " ")
        if window == "days_since":
            return FeatureInfo(f"Days since last '{label}'", "product", LOW_ADOPTION, True, "{:.0f} days")
        if window == "per_month":
            return FeatureInfo(f"'{label}' per month since signup", "product", LOW_ADOPTION, False, "{:.1f}")
        return FeatureInfo(f"'{label}' in the last {window[:-1]} days", "product", LOW_ADOPTION, False, "{:,.0f}")
    if name.startswith(LEVEL_PREFIX):
        label = name[len(LEVEL_PREFIX) :].replace("__", ": ").replace("_", " ")
        return FeatureInfo(label, "other", CONTEXT, False, "{:.0f}")
    return FeatureInfo(name.replace("_", " ").capitalize(), "other", CONTEXT, False, "{:.2f}")


def is_count(name: str) -> bool:
    """Whether a feature is a non-negative count or rate (log1p for linear models)."""
    return name.endswith(COUNT_SUFFIXES) or name.startswith((ACTION_PREFIX, USAGE_PREFIX)) or name == "mrr"


def safe_name(text: object) -> str:
    """A column-name fragment any model library accepts: letters, digits and underscores only
    (XGBoost refuses `[`, `]` and `<` in feature names)."""
    return _safe_name(str(text))


@functools.lru_cache(maxsize=4096)  # a pure function of the text, asked for every column of every build
def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^0-9a-zA-Z]+", "_", str(text)).strip("_").lower()
    return cleaned[:40] or "blank"


def as_utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    """A UTC timestamp; naive input is taken to be UTC."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _utc(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.DatetimeTZDtype) and str(col.dtype.tz) == "UTC":
        return col  # as the loaders build them: nothing to parse
    col = pd.to_datetime(col, utc=True, errors="coerce")
    return col.dt.tz_convert("UTC")


# Times as int64 nanoseconds since the epoch (UTC), NaT as _NAT: numpy arithmetic on them gives
# the same numbers as pandas' timestamp arithmetic, without its fixed cost per operation (which,
# for a batch of one, was most of the features' time).
_NAT = np.iinfo(np.int64).min
_DAY_NS = 86_400 * 10**9  # DAY in nanoseconds


def _ns(col: pd.Series | ArrayLike) -> np.ndarray:
    """A time column (or its values) as int64 nanoseconds since the epoch, UTC; missing or
    unreadable: _NAT. Possibly a view of the column: to read, never to write."""
    values = col.array if isinstance(col, pd.Series) else col
    if isinstance(values, pd.DatetimeIndex):
        values = values.array
    if isinstance(values, pd.arrays.DatetimeArray) and str(values.tz) == "UTC":  # as the loaders build them
        return values.asi8 if values.unit == "ns" else values.as_unit("ns").asi8  # (`as_unit` always copies)
    return np.asarray(_utc(pd.Series(values)).array.as_unit("ns").asi8)


def _values(frame: Table, name: str) -> ArrayLike:
    """A column's values (a numpy or pandas array, to read, never to write) without building a
    Series: pandas builds one per `frame[name]` at a fixed cost (about 50 µs), which for a batch
    of one was most of the features' time; `_get_column_array` is how pandas itself reads a
    column's array. A `Columns` holds the arrays themselves. A duplicated name goes the ordinary
    way."""
    if isinstance(frame, Columns):
        return frame.values(name)
    at = frame.columns.get_loc(name)
    if isinstance(at, int):
        return frame._get_column_array(at)
    return frame[name].array


@functools.lru_cache(maxsize=16)
def _as_of_ns(as_of: pd.Timestamp) -> int:
    return as_utc(as_of).as_unit("ns").value


class _Positions:
    """Where each customer id sits in the scored customers' index (-1: not scored):
    `Index.get_indexer` by binary search over the ids sorted once, for all the fact tables."""

    def __init__(self, index: pd.Index):
        self.index = index
        ids = index.to_numpy()
        self.order = np.argsort(ids, kind="stable")
        self.sorted = ids[self.order]

    def __len__(self) -> int:
        return len(self.index)

    def of(self, customer_ids: ArrayLike) -> np.ndarray:
        ids = np.asarray(customer_ids)
        if not len(self.sorted):
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.sorted, ids), len(self.sorted) - 1)
        return np.where(self.sorted[at] == ids, self.order[at], -1).astype(np.int64)


def _days_between(later: np.ndarray | int, earlier: np.ndarray, missing: float = np.nan) -> np.ndarray:
    """(later − earlier) in days, as pandas' `(later - earlier) / DAY`; `missing` where either is NaT.

    The difference is taken everywhere and then masked (NaT's wrapped-around difference is never
    read): on a batch of one, each numpy call costs more than the arithmetic."""
    later = np.asarray(later, dtype=np.int64)
    known = earlier != _NAT
    if later.ndim:
        known &= later != _NAT
    return np.where(known, (later - earlier) / _DAY_NS, missing)


def _inactive(customers: pd.DataFrame) -> np.ndarray:
    """`is_active` False (or 0): churned, date unknown."""
    if "is_active" not in customers:
        return np.zeros(len(customers), dtype=bool)
    values = _values(customers, "is_active")
    if isinstance(values, np.ndarray) and values.dtype == bool:  # as the loaders build it: no missing value
        return ~values
    active = pd.Series(values, copy=False)
    if pd.api.types.is_bool_dtype(active.dtype) and not active.hasnans:
        return ~active.to_numpy(dtype=bool)
    return active.map(lambda v: v is False or v == 0).to_numpy(dtype=bool)


def _column(frame: pd.DataFrame, name: str, default: object = None) -> pd.Series:
    return frame[name] if name in frame else pd.Series(default, index=frame.index, dtype=object)


def churned_flags(customers: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """Churned by `as_of`: a churn date at or before it, or marked inactive without a date (the
    date is unknown, but the customer is gone: never scored, a churner in snapshot training)."""
    churned = _ns(_values(customers, "churned_at"))
    known = churned != _NAT
    return (known & (churned <= _as_of_ns(as_of))) | (_inactive(customers) & ~known)


def _signed_up(customers: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    signup = _ns(_values(customers, "signup_date"))
    return (signup != _NAT) & (signup <= _as_of_ns(as_of))


def _rows(table: Table, keep: np.ndarray) -> Table:
    """The rows of a table where `keep` is true (the table itself when all are)."""
    if keep.all():
        return table
    return table.rows(keep) if isinstance(table, Columns) else table.loc[keep]


def active_customers(tables: Tables, as_of: pd.Timestamp) -> Table:
    """Customers signed up by `as_of` and not churned by then (see `churned_flags`)."""
    c = tables.customers
    return _rows(c, _signed_up(c, as_of) & ~churned_flags(c, as_of))


# --- Learned at training time ------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """What a model's features were learned from, stored with it so scoring builds the same
    columns: the plan levels kept (rarer ones pooled as `other`), the session action types
    counted, and — for a book without event history — the customers table's own snapshot columns
    (numeric `feature_usage` keys, and low-cardinality text ones as levels)."""

    plans: tuple[str, ...] = ()
    action_types: tuple[str, ...] = ()
    snapshot: bool = False
    usage_keys: tuple[str, ...] = ()
    usage_levels: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def as_json(self) -> dict:
        return {
            "plans": list(self.plans),
            "action_types": list(self.action_types),
            "snapshot": self.snapshot,
            "usage_keys": list(self.usage_keys),
            "usage_levels": {key: list(levels) for key, levels in self.usage_levels},
        }


def _kept_levels(values: pd.Series, min_share: float = 0.01, min_count: int = 10) -> tuple[str, ...]:
    counts = values.astype(str).value_counts()
    kept = counts[(counts >= max(min_count, min_share * len(values)))].index[:MAX_LEVELS]
    return tuple(sorted(str(v) for v in kept))


def _usage_frame(customers: pd.DataFrame) -> pd.DataFrame:
    """`feature_usage` as one column per key (objects), rows that are not a mapping as empty."""
    records = [u if isinstance(u, Mapping) else {} for u in _column(customers, "feature_usage", None).tolist()]
    frame = pd.DataFrame.from_records(records, index=customers.index) if records else pd.DataFrame()
    return frame.reindex(index=customers.index)


def has_event_history(tables: Tables, customers: pd.DataFrame, as_of: pd.Timestamp) -> bool:
    """At least half the customers have a dated event (session, ticket, NPS answer or billing
    event) by `as_of`; otherwise the book is a snapshot and its customers table is the data."""
    ids: set = set()
    for frame, column in (
        (tables.sessions, "started_at"),
        (tables.tickets, "opened_at"),
        (tables.nps, "responded_at"),
        (tables.billing, "occurred_at"),
    ):
        if frame is not None and not frame.empty:
            frame = as_frame(frame)
            ids.update(frame.loc[(_utc(frame[column]) <= as_of).to_numpy(), "customer_id"].tolist())
    return len(ids) >= 0.5 * max(len(customers), 1)


def learn_spec(tables: Tables, as_of: pd.Timestamp) -> FeatureSpec:
    """The `FeatureSpec` of the customers signed up by `as_of` and the facts up to it."""
    as_of = as_utc(as_of)
    tables = tables.frames()  # training's pandas; a no-op for the loaders' book frames
    c = as_frame(tables.customers)
    c = c.loc[(_utc(c["signup_date"]) <= as_of).to_numpy()]
    plans = _kept_levels(c["plan"].fillna("")) if len(c) else ()
    actions = getattr(tables, "actions", None)
    action_types: tuple[str, ...] = ()
    if actions is not None and not actions.empty:
        actions = as_frame(actions)
        seen = actions.loc[(_utc(actions["at"]) <= as_of).to_numpy()]
        per_type = seen.groupby(seen["type"].astype(str))["customer_id"].nunique().sort_values(ascending=False)
        common = per_type[per_type >= max(10, 0.02 * max(len(c), 1))]
        action_types = tuple(sorted(common.index[:MAX_ACTION_TYPES]))
    snapshot = not has_event_history(tables, c, as_of)
    usage_keys: list[str] = []
    usage_levels: list[tuple[str, tuple[str, ...]]] = []
    if snapshot and len(c):
        usage = _usage_frame(c)
        for key in usage.columns:
            raw = usage[key]
            numbers = pd.to_numeric(raw, errors="coerce")
            present = raw.notna()
            if present.sum() == 0:
                continue
            if numbers[present].notna().mean() >= 0.9:
                usage_keys.append(str(key))
            elif raw[present].map(lambda v: isinstance(v, str | bool)).all():
                levels = _kept_levels(raw[present].astype(str))
                if len(levels) >= 2 or (len(levels) == 1 and present.mean() < 1):
                    usage_levels.append((str(key), levels))
    return FeatureSpec(
        plans=plans,
        action_types=action_types,
        snapshot=snapshot,
        usage_keys=tuple(sorted(usage_keys)),
        usage_levels=tuple(sorted(usage_levels)),
    )


def _unique_names(prefix: str, raw: Sequence[str], taken: set[str]) -> list[str]:
    out = []
    for value in raw:
        name = f"{prefix}{safe_name(value)}"
        stem, n = name, 2
        while name in taken:
            name, n = f"{stem}_{n}", n + 1
        taken.add(name)
        out.append(name)
    return out


@dataclass(frozen=True)
class _Layout:
    """The learned columns' names of one `FeatureSpec`, in the frame's order (plans, action
    types, usage keys, usage levels; a clash gets a numbered suffix)."""

    plans: tuple[str, ...]
    actions: tuple[str, ...]
    usage_keys: tuple[str, ...]
    usage_levels: tuple[tuple[str, ...], ...]


@functools.lru_cache(maxsize=64)  # a pure function of the spec, asked for every build (a batch of one too)
def _layout(spec: FeatureSpec) -> _Layout:
    taken = set(FIXED_FEATURES)
    plans = _unique_names(PLAN_PREFIX, spec.plans, taken)
    actions = _unique_names(ACTION_PREFIX, spec.action_types, taken)
    usage_keys = _unique_names(USAGE_PREFIX, spec.usage_keys, taken)
    usage_levels = [
        _unique_names(f"{LEVEL_PREFIX}{safe_name(key)}__", levels, taken) for key, levels in spec.usage_levels
    ]
    return _Layout(tuple(plans), tuple(actions), tuple(usage_keys), tuple(map(tuple, usage_levels)))


_NO_FACTS = pd.DataFrame()  # read only


class _Facts:
    """One fact table reduced to positions in the customer index and ages in days at as_of.

    Rows of unknown customers, without a timestamp, or dated after as_of are dropped here, so
    nothing later can read a future fact.
    """

    def __init__(
        self, frame: pd.DataFrame, time_col: str, index: _Positions, as_of: pd.Timestamp, rows: np.ndarray | None = None
    ):
        """`rows`: a mask of the frame's rows to consider at all."""
        self.n = len(index)
        self.as_of_ns = _as_of_ns(as_of)
        self._numbers: dict[str, np.ndarray] = {}
        if frame is None or frame.empty:
            self.frame = _NO_FACTS
            self.keep = np.zeros(0, dtype=bool)
            self.pos = np.zeros(0, dtype=np.int64)
            self.age = np.zeros(0)
            self.time_ns = np.zeros(0, dtype=np.int64)
            return
        pos = index.of(_values(frame, "customer_id"))
        times = _ns(_values(frame, time_col))
        age = _days_between(self.as_of_ns, times)
        with np.errstate(invalid="ignore"):
            keep = (pos >= 0) & (age >= 0)  # NaN ages compare False
        if rows is not None:
            keep &= rows
        # The frame stays whole; its columns are read through `keep` (no filtered copy of it).
        self.frame, self.keep = frame, keep
        self.pos = pos[keep]
        self.age = age[keep]
        self.time_ns = times[keep]

    def count(self, lo: float, hi: float, weights: np.ndarray | None = None, mask: np.ndarray | None = None):
        """Sum of `weights` (or count) of facts with lo ≤ age < hi days, per customer."""
        sel = (self.age >= lo) & (self.age < hi)
        if mask is not None:
            sel &= mask
        w = None if weights is None else np.asarray(weights, dtype=float)[sel]
        return np.bincount(self.pos[sel], weights=w, minlength=self.n).astype(float)

    def min_age(self, mask: np.ndarray | None = None) -> np.ndarray:
        out = np.full(self.n, np.inf)
        if mask is None:
            np.minimum.at(out, self.pos, self.age)
        else:
            np.minimum.at(out, self.pos[mask], self.age[mask])
        return out

    def count_by_kind(self, kind: np.ndarray, kinds: int, lo: float, hi: float, weights: np.ndarray) -> np.ndarray:
        """`count` per customer and kind, all kinds in one pass: an (n, kinds) array. `kind` is each
        fact's kind code, -1 for a kind not counted."""
        sel = (self.age >= lo) & (self.age < hi) & (kind >= 0)
        bins = self.pos[sel] * kinds + kind[sel]
        counts = np.bincount(bins, weights=np.asarray(weights, dtype=float)[sel], minlength=self.n * kinds)
        return counts.reshape(self.n, kinds)

    def min_age_by_kind(self, kind: np.ndarray, kinds: int) -> np.ndarray:
        """`min_age` per customer and kind: an (n, kinds) array (inf where none)."""
        sel = kind >= 0
        out = np.full(self.n * kinds, np.inf)
        np.minimum.at(out, self.pos[sel] * kinds + kind[sel], self.age[sel])
        return out.reshape(self.n, kinds)

    def column(self, name: str) -> np.ndarray:
        return np.asarray(_values(self.frame, name))[self.keep]

    def times(self, name: str) -> np.ndarray:
        """A time column of the kept facts, as int64 nanoseconds (`_ns`)."""
        return _ns(_values(self.frame, name))[self.keep]

    def numbers(self, name: str, default: float = 0.0) -> np.ndarray:
        if not self.pos.size or name not in self.frame:
            return np.full(self.pos.size, default)
        if name not in self._numbers:  # a column read once, whatever the calls (pandas' cost is per call)
            self._numbers[name] = _numeric(_values(self.frame, name))
        values = self._numbers[name][self.keep]
        values[np.isnan(values)] = default
        return values


def _mrr_as_of(billing: _Facts, fallback: np.ndarray, days_before: int = 0) -> np.ndarray:
    """Latest `mrr_after` at or before `days_before` days before as_of per customer, else
    `fallback`. `billing`: the billing facts as of as_of, reduced once for every as-of asked."""
    out = fallback.astype(float).copy()
    if billing.pos.size == 0:
        return out
    values = billing.numbers("mrr_after", np.nan)  # missing or unreadable: no change of MRR
    known = ~np.isnan(values) & (billing.time_ns <= billing.as_of_ns - days_before * _DAY_NS)
    if not known.any():
        return out
    pos, age, values = billing.pos[known], billing.age[known], values[known]
    order = np.lexsort((-age, pos))  # by customer, oldest first → last is latest
    pos, values = pos[order], values[order]
    last = np.r_[pos[1:] != pos[:-1], True]
    out[pos[last]] = values[last]
    return out


def _numeric(values: ArrayLike) -> np.ndarray:
    """A column's values as floats (unreadable or missing: NaN), as `pd.to_numeric(errors="coerce")`."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(float)  # a copy: the caller may write to it
    column = pd.Series(values, copy=False)
    if not pd.api.types.is_numeric_dtype(column.dtype):
        column = pd.to_numeric(column, errors="coerce")
    return column.to_numpy(dtype=float, na_value=np.nan, copy=True)


def _texts(values: np.ndarray) -> np.ndarray:
    """Values as text, missing as "" (`fillna("").astype(str)` without a pandas call per step)."""
    return np.array(
        [value if type(value) is str else "" if pd.isna(value) else str(value) for value in values], dtype=object
    )


def _per_month(count: np.ndarray, tenure: np.ndarray) -> np.ndarray:
    """A lifetime count as a monthly rate (the first month counts as a whole month)."""
    return count / np.maximum(tenure / 30.0, 1.0)


def build_features(
    tables: Tables,
    as_of: pd.Timestamp,
    spec: FeatureSpec | None = None,
    *,
    population: str = "active",
) -> pd.DataFrame:
    """Point-in-time features as of `as_of` (see the module docstring), index `customer_id`.

    `spec`: what a trained model learned (`learn_spec`); None learns it from `tables` (the rules
    baseline). `population`: "active" (customers to score) or "all" (every customer signed up by
    `as_of`, churned or not: snapshot training, where a churner's row is as of its churn date)."""
    as_of = as_utc(as_of)
    spec = learn_spec(tables, as_of) if spec is None else spec
    as_of_ns = _as_of_ns(as_of)
    c = tables.customers
    signup, churned = _ns(_values(c, "signup_date")), _ns(_values(c, "churned_at"))
    keep = (signup != _NAT) & (signup <= as_of_ns)  # `_signed_up`
    churned_by_then = (churned != _NAT) & (churned <= as_of_ns)
    if population != "all":
        keep &= ~(churned_by_then | (_inactive(c) & (churned == _NAT)))  # `churned_flags`
    customers = _rows(c, keep)
    signup, churned, churned_by_then = signup[keep], churned[keep], churned_by_then[keep]
    index = pd.Index(np.asarray(_values(customers, "customer_id")), name="customer_id")
    positions = _Positions(index)
    n = len(index)
    f: dict[str, np.ndarray] = {}

    # Recency and tenure. A churner (snapshot training) is seen as of its churn date.
    end = np.where(churned_by_then, churned, as_of_ns)
    tenure = _days_between(end, signup, missing=0.0)
    tenure = np.clip(tenure, 0.0, TENURE_CAP_DAYS)
    s = _Facts(tables.sessions, "started_at", positions, as_of)
    last = s.min_age()
    never = ~np.isfinite(last)
    f["days_since_last_session"] = np.minimum(np.where(never, tenure, last), RECENCY_CAP_DAYS)
    f["never_active"] = never.astype(float)
    f["tenure_days"] = tenure

    # Frequency, trend and breadth.
    pages, actions = s.numbers("pages_viewed"), s.numbers("n_actions")
    f["sessions_7d"] = s.count(0, 7)
    f["sessions_30d"] = s.count(0, 30)
    f["sessions_90d"] = s.count(0, 90)
    lifetime = s.count(0, np.inf, s.numbers("weight", 1.0) if "weight" in s.frame else None)
    f["sessions_per_month"] = _per_month(lifetime, tenure)
    f["pages_30d"] = s.count(0, 30, pages)
    f["pages_90d"] = s.count(0, 90, pages)
    prev_sessions = s.count(30, 60)
    f["usage_ratio_30d"] = (f["sessions_30d"] + 1.0) / (prev_sessions + 1.0)
    f["sessions_ratio_30_90d"] = (f["sessions_30d"] + 1.0) / (f["sessions_90d"] / 3.0 + 1.0)
    f["sessions_change_30d"] = f["sessions_30d"] - prev_sessions
    f["pages_change_30d"] = f["pages_30d"] - s.count(30, 60, pages)
    actions_30 = s.count(0, 30, actions)
    f["actions_per_session_30d"] = np.divide(
        actions_30, f["sessions_30d"], out=np.zeros(n), where=f["sessions_30d"] > 0
    )

    # Support.
    t = _Facts(tables.tickets, "opened_at", positions, as_of)
    f["tickets_30d"] = t.count(0, 30)
    f["tickets_90d"] = t.count(0, 90)
    f["tickets_per_month"] = _per_month(t.count(0, np.inf), tenure)
    if t.pos.size:
        solved = t.times("solved_at")
        still_open = (solved == _NAT) | (solved > as_of_ns)
        risky = np.array([str(value).lower() in RISKY_PRIORITIES for value in t.column("priority")], dtype=bool)
    else:
        still_open = risky = np.zeros(0, dtype=bool)
    f["open_tickets"] = t.count(0, np.inf, mask=still_open)
    f["urgent_tickets_90d"] = t.count(0, 90, mask=risky)
    f["tickets_change_30d"] = f["tickets_30d"] - t.count(30, 60)

    # NPS: latest answer, its change vs the previous one, mean, count and age.
    q = _Facts(tables.nps, "responded_at", positions, as_of)
    latest, previous = np.full(n, np.nan), np.full(n, np.nan)
    total, answers, newest = np.zeros(n), np.zeros(n), np.full(n, np.inf)
    if q.pos.size:
        score = q.numbers("score", np.nan)
        ok = ~np.isnan(score) & (score >= 0) & (score <= 10)
        pos, age, score = q.pos[ok], q.age[ok], score[ok]
        order = np.lexsort((-age, pos))  # per customer, oldest first
        pos, score, age = pos[order], score[order], age[order]
        is_last = np.r_[pos[1:] != pos[:-1], True]
        latest[pos[is_last]] = score[is_last]
        newest[pos[is_last]] = age[is_last]
        before_last = np.r_[is_last[1:], False] & ~is_last  # the row right before a customer's last
        previous[pos[before_last]] = score[before_last]
        total = np.bincount(pos, weights=score, minlength=n)
        answers = np.bincount(pos, minlength=n).astype(float)
    f["nps_latest"] = np.where(np.isnan(latest), NPS_NEUTRAL, latest)
    f["nps_change"] = np.nan_to_num(latest - previous, nan=0.0)
    f["nps_mean"] = np.divide(total, answers, out=np.full(n, NPS_NEUTRAL), where=answers > 0)
    f["nps_count"] = answers
    f["nps_days_since"] = np.minimum(np.where(np.isfinite(newest), newest, RECENCY_CAP_DAYS), RECENCY_CAP_DAYS)
    f["nps_missing"] = np.isnan(latest).astype(float)

    # Billing.
    static_mrr = np.nan_to_num(_numeric(_values(customers, "mrr")), nan=0.0, posinf=np.inf, neginf=-np.inf)
    b = _Facts(tables.billing, "occurred_at", positions, as_of)
    mrr_now = _mrr_as_of(b, static_mrr)
    mrr_then = _mrr_as_of(b, mrr_now, days_before=90)
    f["mrr"] = mrr_now
    f["mrr_change_90d_pct"] = np.where(mrr_then > 0, (mrr_now - mrr_then) / np.maximum(mrr_then, 1e-9), 0.0)
    kind = b.column("kind").astype(str) if b.pos.size else np.zeros(0, dtype=str)
    failed = kind == "payment_failed"
    f["payment_failures_30d"] = b.count(0, 30, mask=failed)
    f["payment_failures_90d"] = b.count(0, 90, mask=failed)
    # A downgrade: the MRR fell, or a subscription change with a negative amount (a credit).
    negative_change = (kind == "subscription_changed") & (b.numbers("amount") < 0)
    f["downgraded_90d"] = ((mrr_now < mrr_then - 1e-9) | (b.count(0, 90, mask=negative_change) > 0)).astype(float)

    if spec.snapshot:
        _snapshot_columns(f, customers, end, tenure)

    layout = _layout(spec)
    extra: dict[str, np.ndarray] = {}

    # Plan levels learned at training (names sanitised; the rest pooled as "other").
    plans = _texts(np.asarray(_values(customers, "plan")))
    for name, level in zip(layout.plans, spec.plans, strict=True):
        extra[name] = (plans == level).astype(float)
    if spec.plans:
        extra[f"{PLAN_PREFIX}other"] = (~np.isin(plans, list(spec.plans))).astype(float)

    # Session action types learned at training: 30/90-day counts, monthly rate, days since.
    if spec.action_types:
        a = _Facts(getattr(tables, "actions", None), "at", positions, as_of)
        types = a.column("type").astype(str) if a.pos.size else np.zeros(0, dtype=str)
        weights = a.numbers("count", 1.0)
        # Every type at once: each window one pass over the actions, each measure one array
        # operation over all types (not one per type).
        known = np.array(sorted(set(spec.action_types)), dtype=str)
        code = np.minimum(np.searchsorted(known, types), len(known) - 1)
        kind = np.where(known[code] == types, code, -1)
        recent, earlier = ACTION_WINDOWS_DAYS
        last_30 = a.count_by_kind(kind, len(known), 0, recent, weights)
        last_90 = a.count_by_kind(kind, len(known), 0, earlier, weights)
        per_month = _per_month(a.count_by_kind(kind, len(known), 0, np.inf, weights), tenure[:, None])
        since = a.min_age_by_kind(kind, len(known))
        since = np.minimum(np.where(np.isfinite(since), since, tenure[:, None]), RECENCY_CAP_DAYS)
        column_of = {name: at for at, name in enumerate(known.tolist())}
        for name, kind_name in zip(layout.actions, spec.action_types, strict=True):
            column = column_of[kind_name]
            extra[f"{name}__30d"] = last_30[:, column]
            extra[f"{name}__90d"] = last_90[:, column]
            extra[f"{name}__per_month"] = per_month[:, column]
            extra[f"{name}__days_since"] = since[:, column]

    # A snapshot book's own columns: numeric usage counters and text levels.
    if spec.snapshot and (spec.usage_keys or spec.usage_levels):
        usage = _usage_frame(customers)
        for name, key in zip(layout.usage_keys, spec.usage_keys, strict=True):
            raw = usage[key] if key in usage else pd.Series(np.nan, index=usage.index)
            extra[name] = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        for (key, levels), level_names in zip(spec.usage_levels, layout.usage_levels, strict=True):
            raw = (usage[key] if key in usage else pd.Series(None, index=usage.index, dtype=object)).astype(str)
            raw = raw.to_numpy()
            for name, level in zip(level_names, levels, strict=True):
                extra[name] = (raw == level).astype(float)

    # One float matrix, non-finite values as 0, and one frame around it.
    columns = [*(f[name] for name in FIXED_FEATURES), *extra.values()]
    matrix = np.empty((n, len(columns)))
    for at, values in enumerate(columns):  # `column_stack` costs more per column
        matrix[:, at] = values
    matrix[~np.isfinite(matrix)] = 0.0
    return pd.DataFrame(matrix, index=index, columns=_feature_columns((*FIXED_FEATURES, *extra)), copy=False)


@functools.lru_cache(maxsize=64)
def _feature_columns(names: tuple[str, ...]) -> pd.Index:
    """The features frame's column labels, made once per set of names: pandas infers a string
    index through pyarrow for every new list of labels, and reads it back name by name, which
    for a batch of one cost more than the features themselves. Plain Python strings (object
    dtype): the same labels, compared and listed at no cost. Immutable, so safe to share."""
    return pd.Index(list(names), dtype=object)


def _snapshot_columns(f: dict[str, np.ndarray], customers: pd.DataFrame, end: np.ndarray, tenure: np.ndarray) -> None:
    """A book without event history: the customers table's own columns stand in for the facts
    (last login for recency, `nps_score` for the latest answer, `support_tickets` for open
    tickets). Only for snapshot books: at a past cutoff these columns would leak the future.
    `end`: when each customer is seen (int64 nanoseconds)."""
    since = _days_between(end, _ns(_column(customers, "last_login")))
    known = np.isfinite(since)
    f["days_since_last_session"] = np.minimum(np.where(known, np.maximum(since, 0.0), tenure), RECENCY_CAP_DAYS)
    f["never_active"] = (~known).astype(float)
    nps = pd.to_numeric(_column(customers, "nps_score"), errors="coerce").to_numpy(dtype=float)
    nps = np.where((nps >= 0) & (nps <= 10), nps, np.nan)
    answered = ~np.isnan(nps)
    f["nps_latest"] = np.where(answered, nps, NPS_NEUTRAL)
    f["nps_mean"] = f["nps_latest"]
    f["nps_count"] = answered.astype(float)
    f["nps_missing"] = (~answered).astype(float)
    tickets = pd.to_numeric(_column(customers, "support_tickets"), errors="coerce").to_numpy(dtype=float)
    f["open_tickets"] = np.nan_to_num(np.maximum(tickets, 0.0), nan=0.0)


def usage_features(tables: Tables) -> pd.DataFrame:
    """Today's numeric `feature_usage` counters as `fu_<key>` float columns (0 when absent), index
    `customer_id`, names sanitised. A snapshot, not point in time: for the health score only
    (and, in a snapshot book, through `FeatureSpec.usage_keys`)."""
    ids, names, matrix = usage_values(tables)
    return pd.DataFrame(matrix, index=pd.Index(ids, name="customer_id"), columns=names)


def usage_values(tables: Tables) -> tuple[np.ndarray, list[str], np.ndarray]:
    """`usage_features` as arrays: (customer ids, column names, matrix), no frame (what a batch
    of one reads)."""
    c = tables.customers
    ids: np.ndarray = np.asarray(_values(c, "customer_id"))
    usage = np.asarray(_values(c, "feature_usage")).tolist() if "feature_usage" in c else []
    records = [u if isinstance(u, Mapping) else {} for u in usage] or [{} for _ in range(len(ids))]
    numeric: dict[str, np.ndarray] = {}
    for key in dict.fromkeys(key for record in records for key in record):  # in order of appearance
        values = [record.get(key, np.nan) for record in records]
        column = _plain_numbers(values)
        if column is None:  # text, booleans, huge integers: pandas' reading of a mixed column
            column = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if not np.isnan(column).all():
            numeric[str(key)] = column
    keys = sorted(numeric)
    names = _unique_names(USAGE_PREFIX, keys, set(FIXED_FEATURES))
    matrix = np.column_stack([numeric[key] for key in keys]) if keys else np.zeros((len(ids), 0))
    matrix[~np.isfinite(matrix)] = 0.0
    return ids, names, matrix


_INT64 = (-(2**63), 2**63)


def _plain_numbers(values: list) -> np.ndarray | None:
    """`values` as floats when every one is a plain int (within int64) or float; else None."""
    for value in values:
        kind = type(value)
        if kind is float or (kind is int and _INT64[0] <= value < _INT64[1]):
            continue
        return None
    return np.array(values, dtype=float)
