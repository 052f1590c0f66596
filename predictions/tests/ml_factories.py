"""Synthetic `Tables` for the ML tests: hand-built frames and a small vectorised generator.

The generator is intentionally NOT the demo simulator: a latent risk drives a churn time; in the
weeks before churn most (not all) churners fade out, open tickets, fail payments or answer NPS
low; a share of retained customers has a rough patch that looks the same (noise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predictions.ml.tables import Tables

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
DAY = pd.Timedelta(days=1)


def empty_frames() -> dict[str, pd.DataFrame]:
    ts = "datetime64[ns, UTC]"
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "signup_date": pd.Series(dtype=ts),
                "plan": pd.Series(dtype="object"),
                "mrr": pd.Series(dtype="float64"),
                "churned_at": pd.Series(dtype=ts),
                "feature_usage": pd.Series(dtype="object"),
            }
        ),
        "sessions": pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "started_at": pd.Series(dtype=ts),
                "ended_at": pd.Series(dtype=ts),
                "pages_viewed": pd.Series(dtype="int64"),
                "n_actions": pd.Series(dtype="int64"),
            }
        ),
        "tickets": pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "opened_at": pd.Series(dtype=ts),
                "solved_at": pd.Series(dtype=ts),
                "priority": pd.Series(dtype="object"),
            }
        ),
        "nps": pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "responded_at": pd.Series(dtype=ts),
                "score": pd.Series(dtype="int64"),
            }
        ),
        "billing": pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "occurred_at": pd.Series(dtype=ts),
                "kind": pd.Series(dtype="object"),
                "amount": pd.Series(dtype="float64"),
                "mrr_after": pd.Series(dtype="float64"),
            }
        ),
    }


def make_tables(**frames: pd.DataFrame) -> Tables:
    """Tables from the given frames (rows as dicts or DataFrames), empty frames for the rest."""
    base = empty_frames()
    for name, rows in frames.items():
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        template = base[name]
        for col in template.columns:
            if col not in frame:
                frame[col] = pd.Series([None] * len(frame), dtype=template[col].dtype)
            elif str(template[col].dtype).startswith("datetime"):
                frame[col] = pd.to_datetime(frame[col], utc=True)
        base[name] = frame[list(template.columns)].reset_index(drop=True)
    return Tables(**base)


def append_rows(tables: Tables, **frames) -> Tables:
    """A copy of `tables` with extra rows appended to the named frames."""
    extra = make_tables(**frames)
    out = {}
    for name in ("customers", "sessions", "tickets", "nps", "billing"):
        a, b = getattr(tables, name), getattr(extra, name)
        out[name] = a if b.empty else pd.concat([a, b], ignore_index=True) if not a.empty else b
    return Tables(**out)


def _t(base: pd.Timestamp, days: np.ndarray) -> pd.Series:
    return pd.Series(base + pd.to_timedelta(np.asarray(days, dtype=float), unit="D"))


def synthetic_tables(
    n: int = 3000,
    seed: int = 0,
    as_of: pd.Timestamp = AS_OF,
    history_days: int = 720,
    sessions_per_day: float = 0.35,
    signal: float = 1.0,
) -> Tables:
    """A book of `n` customers over `history_days` up to `as_of` with a learnable, noisy signal.

    `signal` scales how many churners show warning signs (0 = none: only plan/tenure carry risk).
    """
    rng = np.random.default_rng(seed)
    plans = np.array(["starter", "growth", "enterprise"])
    plan = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    mrr = np.round(np.array([49.0, 299.0, 1999.0])[plan] * rng.lognormal(0, 0.3, n))
    signup = -history_days * rng.random(n) ** 1.2  # days relative to as_of
    latent = np.array([0.4, 0.0, -0.6])[plan] + rng.normal(0, 0.7, n)
    churn = signup + 10 + rng.exponential(1.0, n) * 700 / np.exp(latent)
    churned = churn < 0
    end = np.where(churned, churn, 0.0)
    life = end - signup

    # Warning signs before churn (start `window` days before it), and rough patches.
    shows = rng.random(n) < 0.85 * signal
    window = rng.uniform(25, 90, n)
    fade = shows & (rng.random(n) < 0.75)
    spike = shows & (rng.random(n) < 0.4)
    pay = shows & (rng.random(n) < 0.3)
    unhappy = shows & (rng.random(n) < 0.45)
    rough = rng.random(n) < 0.2
    r0 = rng.uniform(-history_days, 0, n)
    r1 = r0 + rng.uniform(20, 70, n)

    def warn(c: np.ndarray, t: np.ndarray, who: np.ndarray) -> np.ndarray:
        return who[c] & (t >= churn[c] - window[c]) & (t < churn[c])

    def patch(c: np.ndarray, t: np.ndarray, who: np.ndarray) -> np.ndarray:
        return rough[c] & who[c] & (t >= r0[c]) & (t < r1[c])

    # Sessions: a Poisson process thinned while fading.
    rate = sessions_per_day * rng.lognormal(-0.2, 0.6, n) * np.exp(-0.2 * latent)
    k = rng.poisson(rate * life)
    c = np.repeat(np.arange(n), k)
    t = signup[c] + life[c] * rng.random(c.size)
    age_in = (t - signup[c]).clip(0)
    keep_p = np.where(warn(c, t, fade), 0.15 + 0.85 * np.clip((churn[c] - t) / window[c], 0, 1) ** 2, 1.0)
    keep_p = np.where(patch(c, t, rng.random(n) < 0.6), 0.35, keep_p) * (1 - 0.5 * np.exp(-age_in / 14))
    mask = rng.random(c.size) < keep_p
    c, t = c[mask], t[mask]
    pages = 1 + rng.poisson(6.0, c.size)
    sessions = pd.DataFrame(
        {
            "customer_id": c + 1,
            "started_at": _t(as_of, t),
            "ended_at": _t(as_of, t + rng.uniform(0.002, 0.05, c.size)),
            "pages_viewed": pages,
            "n_actions": 1 + rng.poisson(pages / 3.0),
        }
    )

    # Tickets: a base rate plus spikes before churn and in rough patches.
    kb = rng.poisson(life / 60.0)
    cb = np.repeat(np.arange(n), kb)
    tb = signup[cb] + life[cb] * rng.random(cb.size)
    ks = np.where(spike | rough, 1 + rng.poisson(2.5, n), 0)
    cs = np.repeat(np.arange(n), ks)
    lo = np.where(spike[cs], churn[cs] - window[cs], r0[cs])
    hi = np.where(spike[cs], churn[cs], r1[cs])
    rough_only = rough & ~spike & (rng.random(n) < 0.45)
    ok = spike[cs] | rough_only[cs]
    cs, ts = cs[ok], (lo + (hi - lo) * rng.random(cs.size))[ok]
    tc, tt = np.concatenate([cb, cs]), np.concatenate([tb, ts])
    ok = (tt > signup[tc]) & (tt < end[tc])
    tc, tt = tc[ok], tt[ok]
    escalated = np.r_[np.zeros(cb.size, bool), np.ones(cs.size, bool)][ok]
    priority = np.where(
        escalated & (rng.random(tc.size) < 0.6),
        rng.choice(["high", "urgent"], tc.size),
        rng.choice(["low", "normal"], tc.size),
    )
    solve = tt + rng.lognormal(np.log(2.0), 1.0, tc.size)
    tickets = pd.DataFrame(
        {
            "customer_id": tc + 1,
            "opened_at": _t(as_of, tt),
            "solved_at": _t(as_of, solve).where(solve < 0),
            "priority": priority,
        }
    )

    # NPS: a survey every 90 days, answered 60 % of the time.
    surveys = np.floor(np.maximum(life - 30, 0) / 90).astype(int)
    cq = np.repeat(np.arange(n), surveys)
    start = np.cumsum(surveys) - surveys
    tq = signup[cq] + 30 + 90 * (np.arange(cq.size) - np.repeat(start, surveys)) + rng.normal(0, 5, cq.size)
    ok = (rng.random(cq.size) < 0.6) & (tq < end[cq])
    cq, tq = cq[ok], tq[ok]
    score = np.clip(np.round(rng.normal(8.0 - 0.8 * latent[cq], 1.4)), 0, 10)
    score = np.where(warn(cq, tq, unhappy) | patch(cq, tq, rough), rng.integers(0, 6, cq.size), score)
    nps = pd.DataFrame({"customer_id": cq + 1, "responded_at": _t(as_of, tq), "score": score.astype(int)})

    # Billing: monthly payments, failures before churn, cancellation at churn, some downgrades.
    months = np.floor(life / 30.4).astype(int) + 1
    cm = np.repeat(np.arange(n), months)
    start = np.cumsum(months) - months
    tm = signup[cm] + 30.4 * (np.arange(cm.size) - np.repeat(start, months)) + 0.01
    ok = tm < end[cm]
    cm, tm = cm[ok], tm[ok]
    p_fail = np.where(warn(cm, tm, pay), 0.6, np.where(patch(cm, tm, rng.random(n) < 0.3), 0.5, 0.02))
    kind = np.where(rng.random(cm.size) < p_fail, "payment_failed", "payment_succeeded")
    downgrade = pay & (rng.random(n) < 0.4) & (churn - window / 2 < 0) & (churn - window / 2 > signup)
    cd = np.flatnonzero(downgrade)
    td = (churn - window / 2)[cd]
    cc = np.flatnonzero(churned)
    billing = pd.DataFrame(
        {
            "customer_id": np.concatenate([cm, cd, cc]) + 1,
            "occurred_at": _t(as_of, np.concatenate([tm, td, churn[cc]])),
            "kind": np.concatenate(
                [kind, np.full(cd.size, "subscription_changed"), np.full(cc.size, "subscription_cancelled")]
            ),
            "amount": np.concatenate([mrr[cm], -0.4 * mrr[cd], np.zeros(cc.size)]),
            "mrr_after": np.concatenate([np.full(cm.size, np.nan), 0.6 * mrr[cd], np.zeros(cc.size)]),
        }
    )
    current_mrr = np.where(downgrade, 0.6 * mrr, mrr)

    usage = pd.Series([{"dashboards": int(a), "reports": int(b)} for a, b in rng.poisson(3, (n, 2))], dtype=object)
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "signup_date": _t(as_of, signup),
            "plan": plans[plan],
            "mrr": current_mrr,
            "churned_at": _t(as_of, churn).where(churned),
            "feature_usage": usage,
        }
    )
    return make_tables(customers=customers, sessions=sessions, tickets=tickets, nps=nps, billing=billing)


def snapshot_tables(n: int = 2000, seed: int = 0, as_of: pd.Timestamp = AS_OF) -> Tables:
    """A customers table and nothing else (no event history), about 47 % churned: tenure,
    contract-like plans (one named with characters XGBoost refuses), MRR, an NPS score, open
    tickets, the last login and usage counters (numeric and text, one key named like a model
    column) drive churn. A quarter of the churners are only marked `is_active = False`."""
    rng = np.random.default_rng(seed)
    plans = np.array(["monthly [legacy]", "one<year", "two-year"])
    plan = rng.choice(3, size=n, p=[0.55, 0.25, 0.20])
    tenure = rng.uniform(1, 72, n) * 30.4
    mrr = np.round(rng.uniform(20, 120, n), 2)
    nps = rng.integers(0, 11, n).astype(float)
    nps[rng.random(n) < 0.3] = np.nan
    tickets = rng.poisson(1.0, n)
    login_gap = rng.exponential(10, n)
    fiber = rng.random(n) < 0.45
    seats = rng.poisson(4, n)
    logit = (
        0.3
        - 0.035 * tenure / 30.4
        + np.array([1.0, -0.6, -1.8])[plan]
        + 0.012 * (mrr - 70)
        - 0.15 * np.nan_to_num(nps - 7)
        + 0.35 * tickets
        + 0.04 * login_gap
        + 0.6 * fiber
        - 0.08 * seats
    )
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    signup = as_of - pd.to_timedelta(tenure, unit="D")
    churned_at = pd.Series(as_of - pd.to_timedelta(rng.uniform(0, 30, n), unit="D")).where(churned, pd.NaT)
    undated = churned & (rng.random(n) < 0.25)
    churned_at = churned_at.where(~undated, pd.NaT)
    end = churned_at.fillna(as_of)
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "signup_date": signup,
            "plan": plans[plan],
            "mrr": mrr,
            "churned_at": churned_at,
            "feature_usage": [
                {"seats": int(s), "internet": "fiber optic" if f else "dsl", "ratio_30d": float(r)}
                for s, f, r in zip(seats, fiber, rng.random(n), strict=True)
            ],
            "is_active": ~churned,
            "last_login": end - pd.to_timedelta(login_gap, unit="D"),
            "nps_score": nps,
            "support_tickets": tickets,
        }
    )
    tables = make_tables(customers=customers)
    return Tables(**{**tables.__dict__, "customers": customers})
