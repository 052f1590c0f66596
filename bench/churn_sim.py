"""A small event-history churn simulator that is NOT the demo generator, for bench/model_quality.py.

Different plans (names with characters model libraries refuse), different action types (stored as
`{type, count}` objects), different churn mechanics: annual plans churn only at renewal, a share
of churners leave without any warning sign, the warning signs differ by configuration (a key
action fading, support escalations, failed payments, a low NPS answer), and retained customers
have rough patches that look the same. Returns `predictions.ml.tables.Tables` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from predictions.ml.tables import Tables

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class SimConfig:
    name: str
    plans: tuple[str, ...]
    plan_share: tuple[float, ...]
    plan_mrr: tuple[float, ...]
    annual: tuple[bool, ...]  # an annual plan churns only at a renewal date
    plan_risk: tuple[float, ...]  # monthly churn log-odds offset per plan
    actions: tuple[str, ...]
    key_action: str  # the action whose fading announces churn
    base_hazard: float  # monthly churn log-odds at average risk
    sessions_per_day: float
    silent_share: float  # churners that show no sign at all
    fade_share: float
    ticket_share: float
    payment_share: float
    nps_share: float


B2B = SimConfig(
    name="b2b-workspace",
    plans=("Starter", "Team+", "Enterprise [EU]"),
    plan_share=(0.5, 0.35, 0.15),
    plan_mrr=(39.0, 249.0, 1900.0),
    annual=(False, False, True),
    plan_risk=(0.5, 0.0, -0.4),
    actions=("upload", "share_link", "api_call", "invite", "export", "comment", "search"),
    key_action="share_link",
    base_hazard=-4.0,
    sessions_per_day=0.6,
    silent_share=0.25,
    fade_share=0.6,
    ticket_share=0.35,
    payment_share=0.2,
    nps_share=0.4,
)
B2C = SimConfig(
    name="b2c-streaming",
    plans=("Free->Pro", "Pro", "Family<5>"),
    plan_share=(0.4, 0.4, 0.2),
    plan_mrr=(4.99, 11.99, 17.99),
    annual=(False, False, False),
    plan_risk=(0.6, 0.0, -0.5),
    actions=("play", "skip", "like", "playlist_add", "search", "download"),
    key_action="playlist_add",
    base_hazard=-3.2,
    sessions_per_day=0.9,
    silent_share=0.35,
    fade_share=0.55,
    ticket_share=0.1,
    payment_share=0.45,
    nps_share=0.2,
)


def simulate(config: SimConfig, n: int = 3000, seed: int = 0, end: str = "2025-06-30", days: int = 540) -> Tables:
    """A book of `n` customers over `days` days up to `end` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    end_ts = pd.Timestamp(end, tz="UTC")
    start = -days
    plan = rng.choice(len(config.plans), size=n, p=config.plan_share)
    signup = np.floor(start + (days - 20) * rng.random(n) ** 0.8)
    risk = rng.normal(0, 0.8, n) + np.array(config.plan_risk)[plan]
    hazard = 1 / (1 + np.exp(-(config.base_hazard + risk)))  # per 30 days
    # Churn day: monthly hazard for monthly plans, at a yearly renewal for annual ones.
    months = rng.geometric(np.clip(hazard, 1e-4, 1))
    annual = np.array(config.annual)[plan]
    years = rng.geometric(np.clip(1 - (1 - hazard) ** 12, 1e-4, 1))
    life = np.where(annual, years * 365 - rng.uniform(0, 3, n), months * 30 - rng.uniform(0, 30, n))
    churn = signup + life
    churned = churn <= 0
    last_day = np.where(churned, churn, 0.0)

    silent = churned & (rng.random(n) < config.silent_share)
    warns = churned & ~silent
    fade = warns & (rng.random(n) < config.fade_share)
    tickets_sign = warns & (rng.random(n) < config.ticket_share)
    pay_sign = warns & (rng.random(n) < config.payment_share)
    nps_sign = warns & (rng.random(n) < config.nps_share)
    window = rng.uniform(20, 75, n)
    # Rough patches among the retained: the same signs, then recovery.
    rough = ~churned & (rng.random(n) < 0.2)
    rough_at = rng.uniform(start, 0, n)
    rough_len = rng.uniform(20, 60, n)

    activity = rng.lognormal(np.log(config.sessions_per_day), 0.6, n) * np.exp(-0.25 * risk)
    taste = rng.dirichlet(np.ones(len(config.actions)) * 0.8, n)
    key = config.actions.index(config.key_action)

    sessions, actions, tickets, nps, billing = [], [], [], [], []
    for i in range(n):
        first, last = int(np.ceil(signup[i])), int(np.floor(last_day[i]))
        if last < first:
            continue
        day = np.arange(first, last + 1, dtype=float)
        mult = np.ones_like(day)
        key_mult = np.ones_like(day)
        if fade[i]:
            ramp = np.clip((day - (last_day[i] - window[i])) / window[i], 0, 1)
            mult *= 1 - 0.8 * ramp
            key_mult *= 1 - 0.97 * ramp
        if rough[i]:
            patch = (day >= rough_at[i]) & (day < rough_at[i] + rough_len[i])
            mult[patch] *= 0.35
            key_mult[patch] *= 0.2
        counts = rng.poisson(activity[i] * mult)
        session_days = np.repeat(day, counts) + rng.random(counts.sum())
        session_key = np.repeat(key_mult, counts)
        if counts.sum():
            # Each session's actions: a type mix of the customer's taste, the key action scaled.
            probs = np.tile(taste[i], (len(session_days), 1))
            probs[:, key] *= session_key
            probs /= probs.sum(axis=1, keepdims=True)
            per_session = 1 + rng.poisson(2.5, len(session_days))
            owner = np.repeat(np.arange(len(session_days)), per_session)
            cum = np.cumsum(probs[owner], axis=1)
            kinds = (rng.random(len(owner))[:, None] > cum).sum(axis=1).clip(0, len(config.actions) - 1)
            pairs, pair_counts = np.unique(owner * len(config.actions) + kinds, return_counts=True)
            started = end_ts + pd.to_timedelta(session_days, unit="D")
            pages = rng.integers(1, 25, len(session_days))
            sessions += zip([i + 1] * len(started), started, pages, per_session, strict=True)
            actions += zip(
                [i + 1] * len(pairs),
                started[pairs // len(config.actions)],
                np.array(config.actions)[pairs % len(config.actions)],
                pair_counts.astype(float),
                strict=True,
            )
        # Tickets: a background rate, escalations before churn or in a rough patch.
        base = rng.poisson(len(day) / 120)
        opened = list(rng.uniform(first, last + 1, base))
        urgent = [False] * base
        if tickets_sign[i] or (rough[i] and rng.random() < 0.4):
            anchor = last_day[i] if tickets_sign[i] else rough_at[i] + rough_len[i] / 2
            extra = 1 + rng.poisson(1.5)
            opened += list(anchor - rng.uniform(2, 45, extra))
            urgent += [True] * extra
        for t, u in zip(opened, urgent, strict=True):
            if first <= t <= last:
                solved = t + rng.exponential(4) if rng.random() < 0.85 else np.nan
                tickets.append((i + 1, end_ts + t * DAY, end_ts + solved * DAY, "urgent" if u else "normal"))
        # NPS: a survey every quarter, answered sometimes.
        for t in np.arange(first + 45, last + 1, 91):
            if rng.random() < 0.45:
                near_end = (nps_sign[i] and last_day[i] - t < 100) or (rough[i] and abs(t - rough_at[i]) < 60)
                mean = 3.5 if near_end else 8.0 - 1.0 * risk[i]
                nps.append((i + 1, end_ts + t * DAY, int(np.clip(np.rint(rng.normal(mean, 1.5)), 0, 10))))
        # Billing: a payment a month (failed before some churns), the plan's MRR set at signup.
        mrr = config.plan_mrr[plan[i]] * float(rng.lognormal(0, 0.2))
        billing.append((i + 1, end_ts + first * DAY, "subscription_changed", 0.0, mrr))
        for t in np.arange(first + 30, last + 1, 30):
            failed = (pay_sign[i] and last_day[i] - t < 60 and rng.random() < 0.6) or rng.random() < 0.01
            billing.append((i + 1, end_ts + t * DAY, "payment_failed" if failed else "payment_succeeded", mrr, np.nan))

    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "signup_date": end_ts + pd.to_timedelta(signup, unit="D"),
            "plan": np.array(config.plans)[plan],
            "mrr": [config.plan_mrr[p] for p in plan],
            "churned_at": pd.Series(end_ts + pd.to_timedelta(np.where(churned, churn, np.nan), unit="D")),
            "feature_usage": [{} for _ in range(n)],
            "is_active": ~churned,
        }
    )
    customers = customers.loc[customers["signup_date"] <= end_ts].reset_index(drop=True)
    frame = pd.DataFrame
    return Tables(
        customers=customers,
        sessions=frame(sessions, columns=["customer_id", "started_at", "pages_viewed", "n_actions"]).assign(
            ended_at=pd.NaT
        ),
        tickets=frame(tickets, columns=["customer_id", "opened_at", "solved_at", "priority"]),
        nps=frame(nps, columns=["customer_id", "responded_at", "score"]),
        billing=frame(billing, columns=["customer_id", "occurred_at", "kind", "amount", "mrr_after"]),
        actions=frame(actions, columns=["customer_id", "at", "type", "count"]),
    )
