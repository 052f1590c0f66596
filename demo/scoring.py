"""A transparent rules baseline: churn probability, health score and top causes from the facts.

Each rule adds a readable amount to a logit, so the biggest amounts *are* the explanation
shown to CSMs; the real model can replace this later and keep the same output shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings

from demo import vocab
from demo.simulate import FAILED, SESSION_DAYS, Book, activity_counts, last_active
from predictions.causes import CAUSES

MODEL_VERSION = "rules-baseline-1"
INTERCEPT = -2.4
WEIGHT = 1.7  # with INTERCEPT: about 3 % of active accounts are high risk, 5 % medium
MIN_IMPACT = 0.3  # smaller contributions are noise, not a cause worth showing
CAUSE_ORDER = (
    "Low engagement",
    "Declining usage",
    "Support issues",
    "Low satisfaction",
    "Payment problems",
    "Onboarding incomplete",
    "Low feature adoption",
)
assert set(CAUSE_ORDER) <= set(CAUSES), "every rule must map to a known cause"
FEATURE_COUNT = len(vocab.FEATURES)


@dataclass
class Scores:
    """Scores of every customer at one instant, or at one per customer (rows of customers not
    alive then are meaningless)."""

    t: float | np.ndarray
    probability: np.ndarray  # rounded to 4 decimals, as stored
    health: np.ndarray
    impacts: np.ndarray  # customers × CAUSE_ORDER
    features: dict[str, np.ndarray]

    def risk_levels(self) -> np.ndarray:
        return np.where(
            self.probability >= settings.RISK_HIGH_THRESHOLD,
            "high",
            np.where(self.probability >= settings.RISK_MEDIUM_THRESHOLD, "medium", "low"),
        )


def _features(book: Book, t: float | np.ndarray) -> dict[str, np.ndarray]:
    """Features as of `t`: one instant for all, or one per customer (e.g. each churner's churn)."""
    n = book.n
    at = np.broadcast_to(np.asarray(t, dtype=float), (n,))  # per customer

    def before(when: np.ndarray, customer: np.ndarray) -> np.ndarray:
        return when < at[customer]

    s30 = activity_counts(book, at - 30, at)
    p30 = activity_counts(book, at - 60, at - 30)
    if book.activity_scale != 1:
        # Sessions were thinned (or multiplied): read recency from the unthinned activity.
        last = last_active(book, at)
        last = np.where(np.isnan(last) & (book.last_login < at), book.last_login, last)
    elif (at >= 0).all():
        last = book.last_login.copy()
    else:
        started, customer = book.sessions["started"], book.sessions["customer"]
        seen = before(started, customer)
        last = np.full(n, -np.inf)
        np.maximum.at(last, customer[seen], started[seen])
        last[np.isinf(last)] = np.nan
        fallback = ~np.isnan(book.last_login) & (book.last_login < at)
        last = np.where(np.isnan(last) & fallback, book.last_login, last)
        last = np.where(at >= 0, book.last_login, last)
    tenure = at - book.signup_t
    never = np.isnan(last)
    since = np.where(never, np.minimum(tenure, at + SESSION_DAYS), at - last)

    tk = book.tickets
    opened, solved, tk_at = tk["opened"], tk["solved"], at[tk["customer"]]
    with np.errstate(invalid="ignore"):
        is_open = (opened < tk_at) & (np.isnan(solved) | (solved > tk_at))
    open_tickets = np.bincount(tk["customer"][is_open], minlength=n)
    recent_tickets = np.bincount(tk["customer"][(opened < tk_at) & (opened >= tk_at - 30)], minlength=n)

    answered = before(book.nps["t"], book.nps["customer"])
    nps = np.full(n, np.nan)
    # Arrays are sorted by customer then time, so the last write per customer is the latest answer.
    nps[book.nps["customer"][answered]] = book.nps["score"][answered]

    bill = book.billing
    bill_at = at[bill["customer"]]
    failed = (bill["kind"] == FAILED) & (bill["t"] < bill_at) & (bill["t"] >= bill_at - 90)
    failures = np.bincount(bill["customer"][failed], minlength=n)
    with np.errstate(invalid="ignore"):
        downgraded = (book.change_t < at) & (book.change_t >= at - 90) & (book.mrr1 < book.mrr0)
    return {
        "sessions_30": s30,
        "sessions_prior_30": p30,
        "days_since_login": since,
        "never_logged_in": never,
        "open_tickets": open_tickets,
        "tickets_30": recent_tickets,
        "nps": nps,
        "payment_failures_90": failures,
        "downgraded_90": downgraded,
        "tenure": tenure,
        "breadth": book.breadth,
    }


def score(book: Book, t: float | np.ndarray = 0.0) -> Scores:
    """Score every customer as of `t` (days relative to as-of; one value, or one per customer)."""
    f = _features(book, t)
    s30, p30, since = f["sessions_30"], f["sessions_prior_30"], f["days_since_login"]
    tenure, breadth = f["tenure"], f["breadth"].astype(float)
    nps = f["nps"]
    young = tenure < 60  # judged by onboarding progress, not by the yardstick of mature accounts
    settling = tenure < 14  # too new to judge at all
    recency = 1.6 * np.clip((since - 5) / 25, 0, 2)
    level = np.where(young, 0.0, 0.8 * np.clip((6 - s30) / 6, 0, 1))
    impacts = WEIGHT * np.stack(
        [
            recency + level,
            # A drop of less than a fifth is ordinary month-to-month noise.
            1.8 * np.clip((p30 - s30) / (p30 + 3) - 0.2, 0, 0.8),
            0.45 * np.minimum(f["open_tickets"], 4) + 0.15 * np.clip(f["tickets_30"] - 1, 0, 4),
            np.where(np.isnan(nps), 0.0, 0.3 * np.clip(7 - np.nan_to_num(nps), 0, 7)),
            0.9 * np.minimum(f["payment_failures_90"], 3) + 0.7 * f["downgraded_90"],
            np.where(
                young & ~settling, 1.2 * np.clip((3 - breadth) / 3, 0, 1) + 0.5 * np.clip((4 - s30) / 4, 0, 1), 0.0
            ),
            np.where(young, 0.0, 0.3 * np.clip(3 - breadth, 0, 3)),
        ],
        axis=1,
    )
    logit = INTERCEPT + impacts.sum(axis=1)
    probability = np.round(1 / (1 + np.exp(-logit)), 4)
    health = 100 * (
        0.3 * np.clip(s30 / 10, 0, 1)
        + 0.2 * np.clip(1 - (since - 3) / 30, 0, 1)
        + 0.15 * np.where(np.isnan(nps), 0.7, np.nan_to_num(nps) / 10)
        + 0.1 * (1 - np.clip(f["open_tickets"] / 4, 0, 1))
        + 0.1 * np.clip(1 - f["payment_failures_90"] / 2 - 0.3 * f["downgraded_90"], 0, 1)
        + 0.15 * np.clip(breadth / 6, 0, 1)
    )
    f["recency_impact"], f["level_impact"] = recency, level  # which factor names "Low engagement"
    return Scores(t=t, probability=probability, health=np.round(health).astype(np.int64), impacts=impacts, features=f)


def top_causes(scores: Scores, rows: np.ndarray) -> list[list[dict]]:
    """Up to three causes per customer in `rows`, biggest first, with a human factor and value."""
    impacts = scores.impacts[rows]
    order = np.argsort(-impacts, axis=1, kind="stable")[:, :3]
    top = np.take_along_axis(impacts, order, axis=1)
    # Stored as each cause's share of the risk (0-1), as the product's scoring stores it.
    total = np.maximum(impacts.sum(axis=1, keepdims=True), 1e-9)
    # Plain lists: indexing them in the loop below is several times cheaper than numpy scalars.
    f = {name: values[rows].tolist() for name, values in scores.features.items()}
    describe = _describers(f)
    result = []
    shares = np.round(top / total, 4).tolist()
    for j, (picks, sizes) in enumerate(zip(order.tolist(), top.tolist(), strict=True)):
        causes = []
        for k, size, share in zip(picks, sizes, shares[j], strict=True):
            if size < MIN_IMPACT:
                break
            factor, value = describe[k](j)
            causes.append({"cause": CAUSE_ORDER[k], "factor": factor, "impact": share, "value": value})
        result.append(causes)
    return result


def _describers(f: dict[str, list]) -> list:
    """Per cause (in CAUSE_ORDER): row -> (feature behind it, the customer's value in words)."""

    def engagement(j: int) -> tuple[str, str]:
        if f["recency_impact"][j] >= f["level_impact"][j]:
            if f["never_logged_in"][j]:
                return "Days since last login", "never logged in"
            return "Days since last login", f"{int(f['days_since_login'][j])} days"
        return "Sessions in the last 30 days", f"{round(f['sessions_30'][j])} sessions"

    def trend(j: int) -> tuple[str, str]:
        recent, prior = round(f["sessions_30"][j]), round(f["sessions_prior_30"][j])
        return "Sessions, last 30 vs prior 30 days", f"{recent} vs {prior}"

    def payment(j: int) -> tuple[str, str]:
        text = f"{f['payment_failures_90'][j]} failed" + (", downgraded" if f["downgraded_90"][j] else "")
        return "Failed payments and downgrades (90 days)", text

    return [
        engagement,
        trend,
        lambda j: ("Open support tickets", f"{f['open_tickets'][j]} open, {f['tickets_30'][j]} in 30 days"),
        lambda j: ("Latest NPS", f"{int(f['nps'][j])}/10"),
        payment,
        lambda j: ("Days since signup", f"{int(f['tenure'][j])} days, {f['breadth'][j]} features in use"),
        lambda j: ("Features in use", f"{f['breadth'][j]} of {FEATURE_COUNT}"),
    ]
