"""Point-in-time customer features: `build_features(tables, as_of)` → one float row per customer.

Rules every feature follows
---------------------------
* Point in time: only facts whose timestamp is ≤ `as_of` are read (sessions by `started_at`,
  tickets by `opened_at`/`solved_at`, NPS by `responded_at`, billing by `occurred_at`,
  interventions by `created_at`/`completed_at`). A window "last 30 days" is (as_of − 30 d, as_of].
* Population: customers that signed up by `as_of` and had not churned before it
  (`churned_at` is NaT or > as_of). Whether and when a customer churns later never changes a row.
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
* `plan_<name>`: one-hot of `customers.plan` (a static attribute, the same caveat as `mrr`). The
  columns are taken from all customers in `tables`, so every cutoff yields the same columns.

`feature_usage` is deliberately NOT a model feature
---------------------------------------------------
`customers.feature_usage` is a snapshot of today's counters, not a time series. Training rows are
built at past cutoffs, where today's counters would leak the future (a churned customer's counters
stop at churn). A model must have the same columns at training and scoring time, so the usage
counters are excluded from the model entirely. `usage_features(tables)` exposes them (as
`usage_<key>` columns) for the transparent health score in `predictions.ml.rules`, which is only
computed for "now". Should a time-stamped usage source appear, add it here as windowed features.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from predictions.ml.tables import Tables

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
# answered, interventions already under way): they are not something a CSM can fix.
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
    "pages_30d": _i("Pages viewed in the last 30 days", "product", LOW_ENGAGEMENT, False),
    "pages_90d": _i("Pages viewed in the last 90 days", "product", LOW_ENGAGEMENT, False),
    # Trend.
    "usage_ratio_30d": _i("Sessions vs the previous 30 days", "product", DECLINING_USAGE, False, "{:.0%}"),
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
    "open_tickets": _i("Open support tickets", "support", SUPPORT, True),
    "urgent_tickets_90d": _i("High/urgent tickets in the last 90 days", "support", SUPPORT, True),
    "tickets_change_30d": _i("Change in tickets vs the previous 30 days", "support", SUPPORT, True, "{:+.0f}"),
    # NPS.
    "nps_latest": _i("Latest NPS score", "other", SATISFACTION, False, "{:.0f}/10"),
    "nps_change": _i("Change in NPS score", "other", SATISFACTION, False, "{:+.0f}"),
    "nps_missing": _i("No NPS answer", "other", CONTEXT, True),
    # Billing.
    "mrr": _i("Monthly recurring revenue", "billing", CONTEXT, False, "{:,.0f}"),
    "mrr_change_90d_pct": _i("MRR change in the last 90 days", "billing", PAYMENT, False, "{:+.0%}"),
    "payment_failures_30d": _i("Failed payments in the last 30 days", "billing", PAYMENT, True),
    "payment_failures_90d": _i("Failed payments in the last 90 days", "billing", PAYMENT, True),
    "downgraded_90d": _i("Downgraded in the last 90 days", "billing", PAYMENT, True),
    # Interventions.
    "interventions_90d": _i("Interventions in the last 90 days", "other", CONTEXT, True),
    "interventions_failed_90d": _i("Failed interventions in the last 90 days", "other", CONTEXT, True),
}

FIXED_FEATURES: tuple[str, ...] = tuple(FEATURES)


def feature_info(name: str) -> FeatureInfo:
    """Description of a feature, including the dynamic ones (`plan_<name>`, `usage_<key>`)."""
    if name in FEATURES:
        return FEATURES[name]
    if name.startswith("plan_"):
        return FeatureInfo(f"On the {name[5:]} plan", "billing", CONTEXT, False, "{:.0f}")
    if name.startswith("usage_"):
        label = name[6:].replace("_", " ")
        return FeatureInfo(f"Usage: {label}", "product", LOW_ADOPTION, False, "{:,.0f}")
    return FeatureInfo(name.replace("_", " ").capitalize(), "other", CONTEXT, False, "{:.2f}")


def as_utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    """A UTC timestamp; naive input is taken to be UTC."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _utc(col: pd.Series) -> pd.Series:
    col = pd.to_datetime(col)
    return col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")


def active_customers(tables: Tables, as_of: pd.Timestamp) -> pd.DataFrame:
    """Customers signed up by `as_of` and not churned before it (churned_at NaT or > as_of)."""
    as_of = as_utc(as_of)
    c = tables.customers
    signup, churned = _utc(c["signup_date"]), _utc(c["churned_at"])
    keep = (signup <= as_of) & (churned.isna() | (churned > as_of))
    return c.loc[keep.to_numpy()]


def plan_columns(tables: Tables) -> list[str]:
    plans = tables.customers["plan"].dropna().astype(str).unique()
    return [f"plan_{p}" for p in sorted(plans)]


class _Facts:
    """One fact table reduced to positions in the customer index and ages in days at as_of.

    Rows of unknown customers, without a timestamp, or dated after as_of are dropped here, so
    nothing later can read a future fact.
    """

    def __init__(self, frame: pd.DataFrame, time_col: str, index: pd.Index, as_of: pd.Timestamp):
        self.n = len(index)
        if frame is None or frame.empty:
            self.frame = pd.DataFrame()
            self.pos = np.zeros(0, dtype=np.int64)
            self.age = np.zeros(0)
            return
        pos = index.get_indexer(frame["customer_id"])
        age = ((as_of - _utc(frame[time_col])) / DAY).to_numpy(dtype=float, na_value=np.nan)
        keep = (pos >= 0) & (age >= 0)  # NaN ages compare False
        self.frame = frame.loc[keep]
        self.pos = pos[keep]
        self.age = age[keep]

    def count(self, lo: float, hi: float, weights: np.ndarray | None = None, mask: np.ndarray | None = None):
        """Sum of `weights` (or count) of facts with lo ≤ age < hi days, per customer."""
        sel = (self.age >= lo) & (self.age < hi)
        if mask is not None:
            sel &= mask
        w = None if weights is None else np.asarray(weights, dtype=float)[sel]
        return np.bincount(self.pos[sel], weights=w, minlength=self.n).astype(float)

    def min_age(self) -> np.ndarray:
        out = np.full(self.n, np.inf)
        np.minimum.at(out, self.pos, self.age)
        return out

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy()


def _mrr_as_of(tables: Tables, index: pd.Index, as_of: pd.Timestamp, fallback: np.ndarray) -> np.ndarray:
    """Latest `mrr_after` at or before as_of per customer, else `fallback`."""
    billing = tables.billing
    out = fallback.astype(float).copy()
    if billing is None or billing.empty:
        return out
    b = billing.loc[billing["mrr_after"].notna()]
    facts = _Facts(b, "occurred_at", index, as_of)
    if facts.pos.size == 0:
        return out
    order = np.lexsort((-facts.age, facts.pos))  # by customer, oldest first → last is latest
    pos, values = facts.pos[order], facts.column("mrr_after").astype(float)[order]
    last = np.r_[pos[1:] != pos[:-1], True]
    out[pos[last]] = values[last]
    return out


def build_features(tables: Tables, as_of: pd.Timestamp) -> pd.DataFrame:
    """Point-in-time features as of `as_of` (see the module docstring), index `customer_id`."""
    as_of = as_utc(as_of)
    customers = active_customers(tables, as_of)
    index = pd.Index(customers["customer_id"].to_numpy(), name="customer_id")
    n = len(index)
    f: dict[str, np.ndarray] = {}

    # Recency and tenure.
    tenure = ((as_of - _utc(customers["signup_date"])) / DAY).to_numpy(dtype=float)
    tenure = np.clip(tenure, 0.0, TENURE_CAP_DAYS)
    s = _Facts(tables.sessions, "started_at", index, as_of)
    last = s.min_age()
    never = ~np.isfinite(last)
    f["days_since_last_session"] = np.minimum(np.where(never, tenure, last), RECENCY_CAP_DAYS)
    f["never_active"] = never.astype(float)
    f["tenure_days"] = tenure

    # Frequency, trend and breadth.
    pages = s.column("pages_viewed").astype(float) if s.pos.size else None
    actions = s.column("n_actions").astype(float) if s.pos.size else None
    pages = np.nan_to_num(pages) if pages is not None else None
    actions = np.nan_to_num(actions) if actions is not None else None
    f["sessions_7d"] = s.count(0, 7)
    f["sessions_30d"] = s.count(0, 30)
    f["sessions_90d"] = s.count(0, 90)
    f["pages_30d"] = s.count(0, 30, pages)
    f["pages_90d"] = s.count(0, 90, pages)
    prev_sessions = s.count(30, 60)
    f["usage_ratio_30d"] = (f["sessions_30d"] + 1.0) / (prev_sessions + 1.0)
    f["sessions_change_30d"] = f["sessions_30d"] - prev_sessions
    f["pages_change_30d"] = f["pages_30d"] - s.count(30, 60, pages)
    actions_30 = s.count(0, 30, actions)
    f["actions_per_session_30d"] = np.divide(
        actions_30, f["sessions_30d"], out=np.zeros(n), where=f["sessions_30d"] > 0
    )

    # Support.
    t = _Facts(tables.tickets, "opened_at", index, as_of)
    f["tickets_30d"] = t.count(0, 30)
    f["tickets_90d"] = t.count(0, 90)
    if t.pos.size:
        solved = _utc(t.frame["solved_at"])
        still_open = (solved.isna() | (solved > as_of)).to_numpy()
        risky = t.frame["priority"].astype(str).str.lower().isin(RISKY_PRIORITIES).to_numpy()
    else:
        still_open = risky = np.zeros(0, dtype=bool)
    f["open_tickets"] = t.count(0, np.inf, mask=still_open)
    f["urgent_tickets_90d"] = t.count(0, 90, mask=risky)
    f["tickets_change_30d"] = f["tickets_30d"] - t.count(30, 60)

    # NPS: latest answer and its change vs the previous one.
    q = _Facts(tables.nps, "responded_at", index, as_of)
    latest, previous = np.full(n, np.nan), np.full(n, np.nan)
    if q.pos.size:
        score = q.column("score").astype(float)
        ok = ~np.isnan(score)
        pos, age, score = q.pos[ok], q.age[ok], score[ok]
        order = np.lexsort((-age, pos))  # per customer, oldest first
        pos, score = pos[order], score[order]
        is_last = np.r_[pos[1:] != pos[:-1], True]
        latest[pos[is_last]] = score[is_last]
        before_last = np.r_[is_last[1:], False] & ~is_last  # the row right before a customer's last
        previous[pos[before_last]] = score[before_last]
    f["nps_latest"] = np.where(np.isnan(latest), NPS_NEUTRAL, latest)
    f["nps_change"] = np.nan_to_num(latest - previous, nan=0.0)
    f["nps_missing"] = np.isnan(latest).astype(float)

    # Billing.
    static_mrr = pd.to_numeric(customers["mrr"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    mrr_now = _mrr_as_of(tables, index, as_of, static_mrr)
    mrr_then = _mrr_as_of(tables, index, as_of - 90 * DAY, mrr_now)
    f["mrr"] = mrr_now
    f["mrr_change_90d_pct"] = np.where(mrr_then > 0, (mrr_now - mrr_then) / np.maximum(mrr_then, 1e-9), 0.0)
    b = _Facts(tables.billing, "occurred_at", index, as_of)
    failed = (b.column("kind") == "payment_failed") if b.pos.size else np.zeros(0, dtype=bool)
    f["payment_failures_30d"] = b.count(0, 30, mask=failed)
    f["payment_failures_90d"] = b.count(0, 90, mask=failed)
    # A downgrade: the MRR fell, or a subscription change with a negative amount (a credit).
    if b.pos.size:
        kind = b.column("kind")
        amount = pd.to_numeric(b.frame["amount"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        negative_change = (kind == "subscription_changed") & (amount < 0)
    else:
        negative_change = np.zeros(0, dtype=bool)
    f["downgraded_90d"] = ((mrr_now < mrr_then - 1e-9) | (b.count(0, 90, mask=negative_change) > 0)).astype(float)

    # Plan one-hot (columns from all customers so every cutoff has the same ones).
    plans = customers["plan"].astype(str).to_numpy()
    plan_cols = {col: (plans == col[5:]).astype(float) for col in plan_columns(tables)}

    # Interventions.
    iv = _Facts(tables.interventions, "created_at", index, as_of)
    f["interventions_90d"] = iv.count(0, 90)
    done = _Facts(tables.interventions, "completed_at", index, as_of)
    failed_iv = (done.frame["outcome"].astype(str) == "failed").to_numpy() if done.pos.size else np.zeros(0, dtype=bool)
    f["interventions_failed_90d"] = done.count(0, 90, mask=failed_iv)

    out = pd.DataFrame({name: f[name] for name in FIXED_FEATURES} | plan_cols, index=index, dtype=float)
    return out.replace([np.inf, -np.inf], np.nan).fillna(0.0)


def usage_features(tables: Tables) -> pd.DataFrame:
    """Today's `feature_usage` counters as `usage_<key>` float columns (0 when absent), index
    `customer_id`. A snapshot, not point in time: for the health score only, never the model."""
    c = tables.customers
    index = pd.Index(c["customer_id"].to_numpy(), name="customer_id")
    records = [u if isinstance(u, dict) else {} for u in c["feature_usage"].tolist()]
    raw = pd.DataFrame.from_records(records, index=index) if records else pd.DataFrame(index=index)
    numeric = raw.apply(pd.to_numeric, errors="coerce")
    numeric = numeric.loc[:, numeric.notna().any()]  # keep keys that are numeric somewhere
    numeric.columns = [f"usage_{k}" for k in numeric.columns]
    return numeric.fillna(0.0).astype(float).reindex(sorted(numeric.columns), axis=1)


# --- One customer (real-time scoring) ---------------------------------------------------------

NAT = np.datetime64("NaT", "ns")
_EMPTY_TIMES = np.zeros(0, dtype="datetime64[ns]")


def times_ns(values: Sequence[object]) -> np.ndarray:
    """Timestamps as naive-UTC `datetime64[ns]`: aware datetimes are converted to UTC, naive ones
    and dates are taken as UTC, ISO strings parsed, None/NaT/NaN become NaT. A plain loop: it
    runs on one customer's few hundred rows, where pandas' per-call overhead would dominate."""
    out = np.empty(len(values), dtype="datetime64[ns]")
    for position, value in enumerate(values):
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
            out[position] = NAT
        elif isinstance(value, pd.Timestamp):
            out[position] = as_utc(value).tz_localize(None).as_unit("ns").to_datetime64()
        elif isinstance(value, dt.datetime):
            naive = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value
            out[position] = np.datetime64(naive, "us")
        elif isinstance(value, dt.date):
            out[position] = np.datetime64(value, "D")
        else:
            out[position] = np.datetime64(value, "ns")
    return out


@dataclass(frozen=True)
class CustomerFacts:
    """Everything `customer_features` reads about ONE customer: plain numpy arrays, timestamps as
    naive-UTC `datetime64[ns]` (NaT when missing). The same facts as that customer's rows in
    `Tables`; `from_tables` cuts them out of a book (tests compare the two paths)."""

    signup: np.datetime64
    churned: np.datetime64
    plan: str
    mrr: float
    session_started: np.ndarray = field(default_factory=lambda: _EMPTY_TIMES)
    session_pages: np.ndarray = field(default_factory=lambda: np.zeros(0))
    session_actions: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ticket_opened: np.ndarray = field(default_factory=lambda: _EMPTY_TIMES)
    ticket_solved: np.ndarray = field(default_factory=lambda: _EMPTY_TIMES)
    ticket_priority: tuple[str, ...] = ()
    nps_responded: np.ndarray = field(default_factory=lambda: _EMPTY_TIMES)
    nps_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    billing_occurred: np.ndarray = field(default_factory=lambda: _EMPTY_TIMES)
    billing_kind: tuple[str, ...] = ()
    billing_amount: np.ndarray = field(default_factory=lambda: np.zeros(0))
    billing_mrr_after: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intervention_created: np.ndarray = field(default_factory=lambda: _EMPTY_TIMES)
    intervention_completed: np.ndarray = field(default_factory=lambda: _EMPTY_TIMES)
    intervention_outcome: tuple[str | None, ...] = ()

    @classmethod
    def from_tables(cls, tables: Tables, customer_id: int) -> CustomerFacts:
        """One customer's rows of a book (for tests and tools; scoring reads the database)."""

        def rows(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.loc[frame["customer_id"].to_numpy() == customer_id]

        def t(frame: pd.DataFrame, column: str) -> np.ndarray:
            return times_ns(frame[column].tolist())

        def num(frame: pd.DataFrame, column: str) -> np.ndarray:
            return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)

        c = rows(tables.customers).iloc[0]
        s, k, q, b, i = (
            rows(f) for f in (tables.sessions, tables.tickets, tables.nps, tables.billing, tables.interventions)
        )
        return cls(
            signup=times_ns([c["signup_date"]])[0],
            churned=times_ns([c["churned_at"]])[0],
            plan=str(c["plan"]),
            mrr=float(pd.to_numeric(c["mrr"], errors="coerce")),
            session_started=t(s, "started_at"),
            session_pages=num(s, "pages_viewed"),
            session_actions=num(s, "n_actions"),
            ticket_opened=t(k, "opened_at"),
            ticket_solved=t(k, "solved_at"),
            ticket_priority=tuple(str(p) for p in k["priority"]),
            nps_responded=t(q, "responded_at"),
            nps_score=num(q, "score"),
            billing_occurred=t(b, "occurred_at"),
            billing_kind=tuple(str(x) for x in b["kind"]),
            billing_amount=num(b, "amount"),
            billing_mrr_after=num(b, "mrr_after"),
            intervention_created=t(i, "created_at"),
            intervention_completed=t(i, "completed_at"),
            intervention_outcome=tuple(i["outcome"]),
        )


def _ages(times: np.ndarray, as_of: np.datetime64) -> np.ndarray:
    """Age in days at as_of, computed exactly like `_Facts` (timedelta64[ns] / 1 day → float)."""
    return (as_of - times) / np.timedelta64(DAY.value, "ns")


def _window(age: np.ndarray, lo: float, hi: float, weights: np.ndarray | None = None, mask=None) -> float:
    sel = (age >= lo) & (age < hi)
    if mask is not None:
        sel &= mask
    return float(sel.sum()) if weights is None else float(weights[sel].sum())


def _latest_value(times: np.ndarray, values: np.ndarray, as_of: np.datetime64, fallback: float) -> float:
    """The value of the latest fact at or before as_of (ties: the later row), else `fallback`."""
    age = _ages(times, as_of)
    keep = age >= 0
    if not keep.any():
        return fallback
    age, values = age[keep], values[keep]
    order = np.argsort(-age, kind="stable")  # oldest first, like `_mrr_as_of`'s lexsort
    return float(values[order[-1]])


def customer_features(facts: CustomerFacts, as_of: pd.Timestamp) -> dict[str, float] | None:
    """`build_features` for ONE customer without pandas: the same definitions (a test compares
    every value with the batch's row), in microseconds instead of milliseconds. Returns None when
    the customer is not in the population at as_of (not signed up yet, or churned before).

    Plan columns: only `plan_<this plan>` (= 1); a model reindexes to its own columns, missing → 0.
    """
    now = as_utc(as_of).tz_localize(None).to_datetime64().astype("datetime64[ns]")
    if np.isnat(facts.signup) or facts.signup > now or (not np.isnat(facts.churned) and facts.churned <= now):
        return None
    f: dict[str, float] = {}

    tenure = float(np.clip(_ages(np.array([facts.signup]), now)[0], 0.0, TENURE_CAP_DAYS))
    s_age = _ages(facts.session_started, now)
    seen = s_age >= 0  # NaN ages compare False: a future or undated session is not seen
    s_age = s_age[seen]
    pages = np.nan_to_num(facts.session_pages.astype(float)[seen])
    actions = np.nan_to_num(facts.session_actions.astype(float)[seen])
    never = s_age.size == 0
    f["days_since_last_session"] = min(tenure if never else float(s_age.min()), RECENCY_CAP_DAYS)
    f["never_active"] = float(never)
    f["tenure_days"] = tenure
    f["sessions_7d"] = _window(s_age, 0, 7)
    f["sessions_30d"] = _window(s_age, 0, 30)
    f["sessions_90d"] = _window(s_age, 0, 90)
    f["pages_30d"] = _window(s_age, 0, 30, pages)
    f["pages_90d"] = _window(s_age, 0, 90, pages)
    prev_sessions = _window(s_age, 30, 60)
    f["usage_ratio_30d"] = (f["sessions_30d"] + 1.0) / (prev_sessions + 1.0)
    f["sessions_change_30d"] = f["sessions_30d"] - prev_sessions
    f["pages_change_30d"] = f["pages_30d"] - _window(s_age, 30, 60, pages)
    actions_30 = _window(s_age, 0, 30, actions)
    f["actions_per_session_30d"] = actions_30 / f["sessions_30d"] if f["sessions_30d"] > 0 else 0.0

    t_age = _ages(facts.ticket_opened, now)
    seen = t_age >= 0
    t_age = t_age[seen]
    solved = facts.ticket_solved[seen]
    still_open = np.isnat(solved) | (solved > now)
    risky = np.array([p.lower() in RISKY_PRIORITIES for p in facts.ticket_priority], dtype=bool)[seen]
    f["tickets_30d"] = _window(t_age, 0, 30)
    f["tickets_90d"] = _window(t_age, 0, 90)
    f["open_tickets"] = _window(t_age, 0, np.inf, mask=still_open)
    f["urgent_tickets_90d"] = _window(t_age, 0, 90, mask=risky)
    f["tickets_change_30d"] = f["tickets_30d"] - _window(t_age, 30, 60)

    q_age = _ages(facts.nps_responded, now)
    score = facts.nps_score.astype(float)
    ok = (q_age >= 0) & ~np.isnan(score)
    q_age, score = q_age[ok], score[ok]
    order = np.argsort(-q_age, kind="stable")  # oldest first
    latest = float(score[order[-1]]) if score.size else np.nan
    previous = float(score[order[-2]]) if score.size > 1 else np.nan
    f["nps_latest"] = NPS_NEUTRAL if np.isnan(latest) else latest
    f["nps_change"] = float(np.nan_to_num(latest - previous, nan=0.0))
    f["nps_missing"] = float(np.isnan(latest))

    static_mrr = 0.0 if np.isnan(facts.mrr) else facts.mrr
    has_mrr = ~np.isnan(facts.billing_mrr_after)
    mrr_times, mrr_values = facts.billing_occurred[has_mrr], facts.billing_mrr_after[has_mrr]
    mrr_now = _latest_value(mrr_times, mrr_values, now, static_mrr)
    mrr_then = _latest_value(mrr_times, mrr_values, now - np.timedelta64(90 * DAY.value, "ns"), mrr_now)
    f["mrr"] = mrr_now
    f["mrr_change_90d_pct"] = (mrr_now - mrr_then) / max(mrr_then, 1e-9) if mrr_then > 0 else 0.0
    b_age = _ages(facts.billing_occurred, now)
    seen = b_age >= 0
    b_age = b_age[seen]
    kind = np.array(facts.billing_kind, dtype=object)[seen]
    amount = np.nan_to_num(facts.billing_amount.astype(float), nan=0.0)[seen]
    failed = kind == "payment_failed"
    f["payment_failures_30d"] = _window(b_age, 0, 30, mask=failed)
    f["payment_failures_90d"] = _window(b_age, 0, 90, mask=failed)
    negative_change = (kind == "subscription_changed") & (amount < 0)
    f["downgraded_90d"] = float(mrr_now < mrr_then - 1e-9 or _window(b_age, 0, 90, mask=negative_change) > 0)

    f["interventions_90d"] = _window(_ages(facts.intervention_created, now), 0, 90)
    d_age = _ages(facts.intervention_completed, now)
    failed_iv = np.array([str(o) == "failed" for o in facts.intervention_outcome], dtype=bool)
    f["interventions_failed_90d"] = _window(d_age, 0, 90, mask=failed_iv)

    out = {name: f[name] for name in FIXED_FEATURES}
    out[f"plan_{facts.plan}"] = 1.0
    return {k: (v if np.isfinite(v) else 0.0) for k, v in out.items()}


def usage_one(feature_usage: Mapping[str, object] | None) -> dict[str, float]:
    """One customer's numeric `feature_usage` counters as `usage_<key>` (the real-time health
    score). Like `usage_features`, except that the keys are this customer's own: the batch takes
    the keys of the whole book (a key another customer has counts as 0 here too, so the two agree
    whenever customers report the same counters)."""
    out = {}
    for key, value in (feature_usage or {}).items():
        number = pd.to_numeric(value, errors="coerce") if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, int | float) or number != number:
            continue
        out[f"usage_{key}"] = float(number)
    return dict(sorted(out.items()))
