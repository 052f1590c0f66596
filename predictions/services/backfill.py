"""Scoring the past: the champion's predictions as of earlier dates, and the portfolio's daily
totals from them.

A book that arrives with its history (an import, the demo) has no predictions from before the day
ChurnShield first scored it, or predictions another model made. Its trend charts would then start
today, or jump on the day a model was trained. `score_history` scores every customer active at
each past checkpoint with the current champion, from the facts known then (the features are
point-in-time), writes those predictions dated then, and redraws the daily portfolio snapshots of
the window from them: one model, no cliff. It writes no alert, touches no customer row and starts
no playbook: the past is shown, not acted on.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from customers.models import Customer
from customers.selectors import risk_level, risk_thresholds
from predictions.data import load_tables
from predictions.ml import rules
from predictions.models import ChurnPrediction, PortfolioSnapshot
from predictions.selectors import champion, health_weights
from predictions.services.registry import loaded_model, probabilities, rules_version
from predictions.services.scoring import _counts_actions, _explain, _features, _with_usage, confidence

DAY = dt.timedelta(days=1)


def _midnight(moment: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(moment.astimezone(dt.UTC).date(), dt.time.min, tzinfo=dt.UTC)


@transaction.atomic
def score_history(*, days: int = 365, every_days: int = 7, now: dt.datetime | None = None) -> dict[str, int]:
    """Score the book with the champion at midnight every `every_days` days over the `days` before
    today (UTC), replacing the predictions of that window before today (and those no scoring run
    wrote at today's midnight: the demo seeder's), and redraw its daily
    portfolio snapshots. Today's predictions and snapshot are the daily batch's. Returns counts."""
    if days < 1 or every_days < 1:
        raise ValueError("days and every_days must be at least 1")
    today = _midnight(now or timezone.now())
    start = today - dt.timedelta(days=days)
    version = champion() or rules_version()
    model = loaded_model(version)
    tables = load_tables(actions=_counts_actions(model))
    weights = health_weights()
    thresholds = risk_thresholds()
    # Back to the first checkpoint at or before `start`, so every day of the window has a score.
    checkpoints = [today - dt.timedelta(days=k * every_days) for k in range(1, -(-days // every_days) + 1)]

    rows: list[ChurnPrediction] = []
    scored: list[tuple[dt.datetime, pd.Series]] = []  # checkpoint → risk per customer
    for moment in sorted(checkpoints):
        features = _features(model, tables, moment)
        if features.empty:
            continue
        proba = np.clip(np.asarray(probabilities(version, features, weights=weights), dtype=float), 0.0, 1.0)
        causes = _explain(version, features, proba, weights)
        health = rules.health_components(_with_usage(features, tables), weights=weights).round().astype(int)
        risks = np.round(proba, 4)
        scored.append((moment, pd.Series(risks, index=features.index.astype(int))))
        health_rows = health.to_dict("records")  # one conversion, not a Series per customer
        for position, customer_id in enumerate(features.index):
            risk = float(risks[position])
            components = health_rows[position]
            rows.append(
                ChurnPrediction(
                    customer_id=int(customer_id),
                    churn_probability=Decimal(f"{risk:.4f}"),
                    risk_level=risk_level(risk, thresholds),
                    top_causes=causes[position],
                    prediction_date=moment,
                    model_version=version.version,
                    health_score=int(components.pop("health_score")),
                    health_components={key: int(value) for key, value in components.items()},
                    confidence=confidence(risk),
                )
            )
    # The window's predictions, and any written at today's midnight by no scoring run (the demo
    # seeder's, in bands that are not the champion's); a run's, `score_customers --as-of` today
    # included, are the daily batch's and stay.
    deleted, _ = ChurnPrediction.objects.filter(
        Q(prediction_date__gte=min(checkpoints), prediction_date__lt=today) | Q(prediction_date=today, run__isnull=True)
    ).delete()
    ChurnPrediction.objects.bulk_create(rows, batch_size=2000)
    snapshots = _redraw_snapshots(scored, start.date(), today.date(), thresholds[1])
    return {"checkpoints": len(scored), "predictions": len(rows), "replaced": deleted, "snapshots": snapshots}


def _redraw_snapshots(scored: list[tuple[dt.datetime, pd.Series]], first: dt.date, today: dt.date, high: float) -> int:
    """Daily totals per owner for the days from `first` to yesterday: who was active at the end of
    each day and, for them, the risk of the latest checkpoint at or before that day."""
    customers = pd.DataFrame.from_records(
        Customer.objects.values("pk", "owner_id", "signup_date", "churned_at", "mrr"),
        columns=["pk", "owner_id", "signup_date", "churned_at", "mrr"],
    ).set_index("pk")
    if customers.empty or not scored:
        return 0
    start = max(first, scored[0][0].date())  # before the first scored checkpoint no risk is known
    days = pd.date_range(start, today - DAY, freq="D", tz="UTC")

    def seconds(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        # Epoch seconds (NaN for none): plain floats compare and broadcast without time zones.
        elapsed = pd.to_datetime(values, utc=True) - pd.Timestamp(0, tz="UTC")
        return np.asarray(elapsed / pd.Timedelta(seconds=1), dtype=float)

    ends = seconds(days) + 86400.0  # each row is the state at the end of its day
    signup = seconds(customers["signup_date"])[:, None]
    churned = seconds(customers["churned_at"])[:, None]
    gone = ~np.isnan(churned)
    # Risk of every customer at every checkpoint (NaN where not scored then), and per day the
    # latest checkpoint that had happened by the end of it.
    risk_at = np.vstack([series.reindex(customers.index).to_numpy(dtype=float) for _, series in scored])
    moments = seconds(pd.DatetimeIndex([moment for moment, _ in scored]))
    latest = np.searchsorted(moments, ends, side="right") - 1
    owners, owner_codes = np.unique(customers["owner_id"].fillna(-1).astype(int).to_numpy(), return_inverse=True)
    one_hot = np.eye(len(owners))[owner_codes].T  # owners × customers: sums per owner as a product
    with np.errstate(invalid="ignore"):
        alive = (signup < ends) & (~gone | (churned >= ends))
        churned_today = gone & (churned >= ends - 86400.0) & (churned < ends)
    risk = np.nan_to_num(risk_at[latest].T)  # customers × days
    mrr = customers["mrr"].astype(float).to_numpy()[:, None]
    totals = {
        "active": one_hot @ alive,
        "at_risk": one_hot @ (alive & (risk >= high)),
        "risk": one_hot @ np.where(alive, risk, 0.0),
        "mrr": one_hot @ np.where(alive, mrr, 0.0),
        "churned": one_hot @ churned_today,
    }
    PortfolioSnapshot.objects.filter(date__gte=first, date__lt=today).delete()
    snapshots = [
        PortfolioSnapshot(
            date=day.date(),
            owner_id=None if owner < 0 else int(owner),
            active_customers=round(totals["active"][o, d]),
            at_risk_customers=round(totals["at_risk"][o, d]),
            risk_sum=round(float(totals["risk"][o, d]), 4),
            mrr_sum=Decimal(f"{totals['mrr'][o, d]:.2f}"),
            churned_customers=round(totals["churned"][o, d]),
        )
        for o, owner in enumerate(owners)
        for d, day in enumerate(days)
    ]
    PortfolioSnapshot.objects.bulk_create(snapshots, batch_size=2000)
    return len(snapshots)
