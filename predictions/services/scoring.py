"""Scoring: features → probability → explanation → stored prediction → customer row → alerts.

The daily batch and the real-time re-score of one customer run the same code path.
"""

import contextlib
import datetime as dt
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pandas as pd
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from alerts.models import Alert, NotificationSettings
from alerts.selectors import notification_settings_get
from alerts.services import alert_create, alerts_create_many, alerts_resolve_cleared
from core import events
from core.auth.roles import sees_all_customers
from core.enqueue import enqueue_on_commit
from core.exceptions import ConflictError, NotFoundError
from customers.models import Customer
from customers.selectors import risk_level, risk_thresholds
from customers.services import customer_scores_set
from predictions.data import OneCustomer, book_has_events, load_customer_facts, load_one, load_tables
from predictions.ml import rules
from predictions.ml.explain import causes_from_contributions, explain_batch
from predictions.ml.features import FeatureSpec, build_features, usage_features, usage_values
from predictions.ml.tables import Tables
from predictions.ml.training import TrainedModel, psi
from predictions.models import (
    MODEL_CHANGE_RUN_PREFIX,
    ChurnPrediction,
    HealthWeights,
    ModelVersion,
    ModelVersionChange,
    PredictionRun,
)
from predictions.selectors import champion, health_weights, version_risk_bands
from predictions.services.drift import retrain_if_drifted
from predictions.services.portfolio import churn_causes_refresh, portfolio_snapshot_take
from predictions.services.registry import loaded_model, probabilities, rules_version

LEVEL_RANK = {"low": 0, "medium": 1, "high": 2}


def confidence(probability: float) -> float:
    """How far the calibrated probability is from a coin toss (0.5 → 0, 0 or 1 → 1)."""
    return round(abs(probability - 0.5) * 2, 4)


def _explain(
    version: ModelVersion, features: pd.DataFrame, proba: np.ndarray, weights: dict[str, float]
) -> list[list[dict]]:
    model = loaded_model(version)
    if model is None:
        return rules.rules_explain(features, weights=weights)
    return explain_batch(model, features, proba)


def score_customers(
    *,
    customer_ids: Iterable[int] | None = None,
    trigger: str = PredictionRun.Trigger.BATCH,
    run_key: str | None = None,
    now: dt.datetime | None = None,
) -> PredictionRun:
    """Score active customers (all, or the listed ones) with the champion model.

    Idempotent per `run_key`: the batch of a day is `batch:<date>` and runs once; a second call
    returns the completed run and writes nothing.
    """
    now = now or timezone.now()
    run_key = run_key or (f"batch:{now:%Y-%m-%d}" if trigger == PredictionRun.Trigger.BATCH else uuid.uuid4().hex)
    existing = PredictionRun.objects.filter(run_key=run_key, status=PredictionRun.Status.COMPLETED).first()
    if existing is not None:
        return existing
    version = champion() or rules_version()
    model = loaded_model(version)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    tables = load_tables(customer_ids=customer_ids, as_of=now, actions=_counts_actions(model))
    timings["load_s"] = time.perf_counter() - started
    features = _features(model, tables, now)
    timings["features_s"] = time.perf_counter() - started - timings["load_s"]
    mark = time.perf_counter()
    weights = health_weights()
    # A whole book may use every core (a loaded model defaults to one thread: real time).
    with model.threads() if model is not None and len(features) > 1000 else contextlib.nullcontext():
        proba = probabilities(version, features, weights=weights)
        timings["predict_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        causes = _explain(version, features, proba, weights)
        timings["explain_s"] = time.perf_counter() - mark
    # Not the model: the transparent health score and the drift check (timed apart, so the
    # model's share of the batch is not flattered by them).
    mark = time.perf_counter()
    drift = psi(model.reference_stats, features) if model is not None and len(features) >= 100 else {}
    health = rules.health_components(_with_usage(features, tables), weights=weights)
    timings["health_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    with transaction.atomic():
        run, _ = PredictionRun.objects.update_or_create(
            run_key=run_key,
            defaults={"trigger": trigger, "model_version": version, "started_at": now, "status": "running"},
        )
        rises = _write_back(run, version, features.index, proba, causes, health, now)
        run.status, run.finished_at = PredictionRun.Status.COMPLETED, timezone.now()
        run.customers_scored, run.risk_rises = len(features.index), rises
        timings["write_s"] = time.perf_counter() - mark
        run.timings = {key: round(value, 4) for key, value in timings.items()}
        run.drift = {name: round(value, 4) for name, value in drift.items()}
        run.save()
        retrain_if_drifted(run=run)
        if trigger == PredictionRun.Trigger.BATCH:
            # The whole book was scored: every active customer's latest causes are these.
            counted = (_customers_per_cause(causes), len(causes)) if customer_ids is None else None
            transaction.on_commit(lambda: _refresh_aggregates(counted))
        # Listeners (playbook trigger rules) act on the new scores once they are committed.
        scored_ids = None if customer_ids is None else [int(i) for i in features.index]
        events.publish_on_commit(events.CustomersScored(run_id=run.pk, customer_ids=scored_ids))
    return run


def score_after_model_change(*, change_id: int) -> int | None:
    """The whole book scored with the champion a person chose (`ModelVersionChange` `change_id`);
    None when the change is gone or a later change replaced its champion (that one re-scores)."""
    change = (
        ModelVersionChange.objects.filter(pk=change_id).select_related("version").defer("version__artifact").first()
    )
    if change is None or change.version.status != ModelVersion.Status.CHAMPION:
        return None
    run = score_customers(trigger=PredictionRun.Trigger.MANUAL, run_key=f"{MODEL_CHANGE_RUN_PREFIX}{change.pk}")
    return run.pk


def _counts_actions(model: TrainedModel | None) -> bool:
    return model is not None and model.spec is not None and bool(model.spec.action_types)


def _features(model: TrainedModel | None, tables: Tables, now: dt.datetime) -> pd.DataFrame:
    """The customers to score at `now` and their features: the champion's (as it learnt them),
    or, for the rules baseline, the same for a batch of one as for the book."""
    if model is None:
        return build_features(tables, pd.Timestamp(now), FeatureSpec(snapshot=not book_has_events()))
    return model.features(tables, pd.Timestamp(now))


def _with_usage(features: pd.DataFrame, tables: Tables) -> pd.DataFrame:
    """Features plus today's usage counters for the health score (a snapshot: fine for today's
    health, a model feature only in a snapshot book, where the features already hold them)."""
    usage = usage_features(tables)
    return features.join(usage.drop(columns=usage.columns.intersection(features.columns)))


def _one_with_usage(features: pd.DataFrame, tables: Tables) -> dict[str, float]:
    """`_with_usage` for a batch of one, as the name → value mapping `rules.health_one` reads (the
    same values in the same order, without a joined frame)."""
    ids, names, matrix = usage_values(tables)
    at = np.flatnonzero(ids == features.index[0])
    usage = matrix[at[0]].tolist() if at.size else [np.nan] * len(names)  # as a reindex: NaN if absent
    values = dict(zip(features.columns.tolist(), features.to_numpy()[0].tolist(), strict=True))
    for name, value in zip(names, usage, strict=True):
        values.setdefault(name, value)
    return values


def _refresh_aggregates(counted: tuple[Counter[str], int] | None) -> None:
    churn_causes_refresh(counted=counted)
    portfolio_snapshot_take()


def _customers_per_cause(causes: list[list[dict]]) -> Counter[str]:
    """How many customers have each cause among their top causes (as `count_latest_causes`)."""
    return Counter(name for top in causes for name in {cause["cause"] for cause in top})


def _write_back(
    run: PredictionRun,
    version: ModelVersion,
    customer_ids: pd.Index,
    proba: np.ndarray,
    causes: list[list[dict]],
    health: pd.DataFrame,
    now: dt.datetime,
) -> int:
    """Prediction rows, customer risk and health, an alert for every risk level that rose or sharp
    health drop, and auto-resolution of the alerts whose condition cleared."""
    ids = [int(i) for i in customer_ids]
    # One read of the previous risk and the names; a large run reads the table rather than a
    # huge IN list.
    known = Customer.objects.filter(pk__in=ids) if len(ids) <= 5000 else Customer.objects.all()
    before = {
        pk: (risk, name, health, owner_id)
        for pk, risk, name, health, owner_id in known.values_list(
            "pk", "churn_risk", "name", "health_score", "owner_id"
        )
    }
    drop_points = notification_settings_get().health_drop_points
    probabilities = np.clip(np.asarray(proba, dtype=float), 0.0, 1.0).tolist()
    # Rounded over the whole frame (half to even, as Python's round in `_score_one_lean`).
    rounded = health.round().astype(int)
    scores = rounded.pop("health_score").tolist()
    components = rounded.to_dict("records")
    predictions, customers, alerts = [], [], []
    # The bands of the model that scored (relative to its book's churn rate), else the settings'.
    thresholds = version_risk_bands(version) or risk_thresholds()
    for position, (customer_id, probability, score) in enumerate(zip(ids, probabilities, scores, strict=True)):
        risk = Decimal(f"{probability:.4f}")
        level = risk_level(float(risk), thresholds)  # from the stored value, so the two always agree
        predictions.append(
            (
                customer_id,
                risk,
                level,
                causes[position],
                now,
                version.version,
                score,
                components[position],
                confidence(probability),
            )
        )
        customers.append((customer_id, risk, score))
        alerts += _alerts_for(
            customer_id, probability, level, score, causes[position], before.get(customer_id), drop_points, thresholds
        )
    _insert_predictions(run, predictions)
    customer_scores_set(scores=customers)
    # One set-based UPDATE: risk or health back where it was resolves the alerts it raised.
    alerts_resolve_cleared(customer_ids=ids if len(ids) <= 5000 else None, now=now)
    previous = _previous_model_version(run)
    first_batch = previous is None and run.trigger == PredictionRun.Trigger.BATCH
    if alerts and previous != version.version and (previous is not None or first_batch):
        # The scores moved because the model changed (or the book is scored for the first time),
        # not the customers: no CSM is paged for each of them; managers get one summary instead.
        _model_switch_summary(previous, version, alerts)
        return 0
    if alerts:
        alerts_create_many(alerts=alerts)
    return sum(1 for alert in alerts if alert["source"] == "risk_rise")


def _previous_model_version(run: PredictionRun) -> str | None:
    """The model of the latest scoring run before `run` (None on the first run)."""
    return (
        PredictionRun.objects.filter(status=PredictionRun.Status.COMPLETED)
        .exclude(pk=run.pk)
        .order_by("-started_at", "-id")
        .values_list("model_version__version", flat=True)
        .first()
    )


def _model_switch_summary(previous: str | None, version: ModelVersion, withheld: list[dict]) -> None:
    rises = sum(1 for alert in withheld if alert["source"] == Alert.Source.RISK_RISE)
    drops = sum(1 for alert in withheld if alert["source"] == Alert.Source.HEALTH_DROP)
    if previous is None:
        title = f"First scoring run with {version.version}"
        message = (
            f"On the first scoring run of this book {rises} customers moved to a higher risk level than "
            "it recorded. Alerts are raised for what changes from now on, so none were raised for each "
            "of them; the customer list filtered by risk shows them."
        )
    else:
        title = f"Scoring model changed: {previous} → {version.version}"
        message = (
            f"With the new model {rises} customers moved to a higher risk level and {drops} had a sharp "
            "health drop. These changes come from the model, not from the customers, so no per-customer "
            "alerts were raised for them; later changes alert as usual."
        )
    alert_create(
        title=title,
        message=message,
        severity=Alert.Severity.MEDIUM,
        source=Alert.Source.MODEL_CHANGED,
        grouping_key=f"model_changed:{version.version}",
        context={"previous_version": previous, "version": version.version, "risk_rises": rises, "health_drops": drops},
    )


PREDICTION_COLUMNS = (
    "customer_id",
    "churn_probability",
    "risk_level",
    "top_causes",
    "prediction_date",
    "model_version",
    "health_score",
    "health_components",
    "confidence",
)


def _alerts_for(
    customer_id: int,
    probability: float,
    level: str,
    score: int,
    causes: list[dict],
    before: tuple | None,
    drop_points: int | None,
    thresholds: tuple[float, float] | None = None,
) -> list[dict]:
    """The alerts one re-scored customer raises: its risk level rose (to medium or high), or its
    health score fell by `drop_points` or more. `before` = (risk, name, health, owner id)."""
    old_risk, name, old_health, owner_id = before or (0, customer_id, None, None)
    old_level = risk_level(float(old_risk or 0), thresholds)
    alerts = []
    if LEVEL_RANK[level] > LEVEL_RANK[old_level] and level != "low":
        top = causes[0]["factor"] if causes else "several signals"
        alerts.append(
            {
                "title": f"{level.capitalize()} churn risk: {name}",
                "message": f"Churn risk rose from {old_level} to {level} ({probability:.0%}); main factor: {top}.",
                "severity": "critical" if level == "high" else "high",
                "customer_id": customer_id,
                "owner_id": owner_id,
                "source": "risk_rise",
                "context": {"level": level, "risk": round(probability, 4)},
            }
        )
    if old_health is not None and drop_points is not None and old_health - score >= drop_points:
        alerts.append(
            {
                "title": f"Health dropped sharply: {name}",
                "message": f"Health score fell from {old_health} to {score}.",
                "severity": "high" if old_health - score >= 2 * drop_points else "medium",
                "customer_id": customer_id,
                "owner_id": owner_id,
                "source": "health_drop",
                "context": {"health_before": old_health, "health_after": score},
            }
        )
    return alerts


def _insert_predictions(run: PredictionRun, rows: list[tuple]) -> None:
    """PostgreSQL: COPY (tens of thousands of rows a second); elsewhere `bulk_create`."""
    if connection.vendor == "postgresql":
        columns = ", ".join((*PREDICTION_COLUMNS, "run_id"))
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY churn_predictions ({columns}) FROM STDIN") as copy,
        ):
            # JSON goes in as text (orjson: several times the stdlib's speed; the server parses it).
            for row in rows:
                copy.write_row(
                    (*row[:3], orjson.dumps(row[3]).decode(), *row[4:7], orjson.dumps(row[7]).decode(), row[8], run.pk)
                )
        return
    ChurnPrediction.objects.bulk_create(
        [ChurnPrediction(run=run, **dict(zip(PREDICTION_COLUMNS, row, strict=True))) for row in rows], batch_size=2000
    )


RESCORE_DEBOUNCE_SECONDS = 5


def rescore_after_commit(*, customer_id: int) -> bool:
    """Hook for significant events (ticket opened, payment failed, NPS answer, long-gap login).

    Enqueues a re-score of the customer once the caller's transaction commits, at most once per
    customer every few seconds (a burst of events costs one re-score). Returns False when a
    re-score is already pending.
    """
    if not cache.add(f"rescore:{customer_id}", 1, timeout=RESCORE_DEBOUNCE_SECONDS):
        return False
    enqueue_on_commit("predictions.tasks.rescore_customer", customer_id)
    return True


def score_one(
    *, customer_id: int, now: dt.datetime | None = None, visible_to: Any = None, write: bool = True
) -> ChurnPrediction:
    """Re-score one customer now (real time) and return the stored prediction.

    A batch of one: the customer's facts in the frames the batch's `load_tables` builds (one
    statement on PostgreSQL: `load_customer_facts`) and the champion's `build_features`, as in the
    batch, then one model call with exact SHAP and one write. The
    rules baseline (cold start) goes through the batch code. A churned customer is not
    re-scored: their last prediction stands.

    Nothing is written when nothing scoring reads has changed since the latest stored prediction
    (the same facts, champion, health weights and risk thresholds: `inputs_digest`): that
    prediction is returned. With `write=False` (a role that may not write) the latest stored
    prediction is returned as it is, and a customer never scored is scored without storing it.

    With `visible_to` (the API's user), a customer outside their portfolio — or none at all — is
    a NotFoundError, checked on the stored row (no lookup of its own).
    """
    now = now or timezone.now()
    one = load_one(customer_id=customer_id)
    if visible_to is not None and (
        one is None or (not sees_all_customers(visible_to) and one.owner_id != visible_to.pk)
    ):
        raise NotFoundError("Customer not found")
    if one is not None and one.latest is not None and not write:
        return ChurnPrediction.objects.get(pk=one.latest[0])
    if one is not None:
        if one.settings_read:
            champ = one.champion
            version = None if champ is None else ModelVersion(pk=champ[0], version=champ[1], kind=champ[2])
            weights = one.weights or HealthWeights().as_dict()
        else:
            version, weights = champion(), health_weights()
        if version is None:  # before the first training: the rules baseline, registered by a writer
            if not write:
                raise ConflictError("This customer has not been scored yet.")
            version = rules_version()
        model = loaded_model(version) if version.kind != ModelVersion.Kind.RULES else None
        actions = _counts_actions(model) if model is not None else True
        facts = load_customer_facts(customer_id=customer_id, as_of=now, actions=actions)
        tables = facts.tables
        digest = inputs_digest(
            tables, version, weights, as_of_day=now.astimezone(dt.UTC).date(), facts_read=facts.fingerprint
        )
        if one.latest is not None and one.latest[1:] == (digest, version.version):
            return ChurnPrediction.objects.get(pk=one.latest[0])
        if model is not None:
            features = model.features(tables, pd.Timestamp(now))
            if len(features):
                return _score_one_lean(one, tables, features, model, version, weights, now, digest=digest, write=write)
        else:
            if not write:
                raise ConflictError("This customer has not been scored yet.")
            run = score_customers(customer_ids=[customer_id], trigger=PredictionRun.Trigger.EVENT, now=now)
            prediction = ChurnPrediction.objects.filter(run=run, customer_id=customer_id).first()
            if prediction is not None:
                ChurnPrediction.objects.filter(pk=prediction.pk).update(inputs_digest=digest)
                prediction.inputs_digest = digest
                return prediction
    prediction = ChurnPrediction.objects.filter(customer_id=customer_id).order_by("-prediction_date", "-id").first()
    if prediction is None:
        raise ConflictError("This customer has churned and was never scored.")
    return prediction


def inputs_digest(
    tables: Tables,
    version: ModelVersion,
    weights: dict[str, float],
    *,
    as_of_day: dt.date,
    facts_read: str | None = None,
) -> str:
    """A fingerprint of everything a real-time score depends on: the customer's facts as read
    (every table's rows in a stable order — or `facts_read`, the fingerprint of the one ordered
    read they came from, which says the same for far less work), the model version, the health
    weights, the risk thresholds and the UTC day.

    The fact tables keep when a fact happened, not when it was stored (a backfilled session, a
    ticket solved later), so no timestamp comparison can tell "nothing new"; the facts themselves
    can, and they are read anyway. Features also age with the clock (days since the last login,
    tenure, counts over windows ending now): the day is an input, so a prediction answers for the
    rest of its UTC day at most, and the first predict of a new day scores afresh.
    """
    parts = [
        repr((version.pk, version.version, sorted(weights.items()), risk_thresholds())),
        as_of_day.isoformat(),
    ]
    if facts_read is not None:
        parts.append(f"read:{facts_read}")
    else:
        for name, frame in sorted(vars(tables).items()):
            if not isinstance(frame, pd.DataFrame):
                parts.append(f"{name}={frame!r}")
                continue
            columns = [_digest_values(frame[column]) for column in frame.columns]
            rows = sorted(map(repr, zip(*columns, strict=True))) if columns else []
            parts.append(f"{name}:{list(frame.columns)}:{rows}")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def _digest_values(column: pd.Series) -> list:
    """A column's values as plain Python values that say exactly what was read: times as integer
    nanoseconds, numbers as numbers, the rest (text, JSON objects, None) as they are."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        return column.array.as_unit("ns").asi8.tolist()
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy().tolist()
    return column.tolist()


def _score_one_lean(
    one: OneCustomer,
    tables: Tables,
    features: pd.DataFrame,
    model: TrainedModel,
    version: ModelVersion,
    weights: dict[str, float],
    now: dt.datetime,
    *,
    digest: str = "",
    write: bool = True,
) -> ChurnPrediction:
    """Predict + explain one customer and write it: the same numbers and rows as the batch.
    With `write=False`, the prediction is returned unsaved and nothing else happens."""
    x = model.values(features)
    probability, contribs = model.predict_one(x)
    probability = float(np.clip(probability, 0.0, 1.0))
    causes = causes_from_contributions(contribs[None, :], x, model.feature_names, model.healthy_reference)[0]
    health = rules.health_one(_one_with_usage(features, tables), weights=weights)
    components = {key: round(float(health[key])) for key in rules.COMPONENTS}
    score = int(health["health_score"])
    risk = Decimal(f"{probability:.4f}")
    level = risk_level(float(risk))
    customer_id = one.customer_id
    if not write:
        return ChurnPrediction(
            customer_id=customer_id,
            churn_probability=risk,
            risk_level=level,
            top_causes=causes,
            prediction_date=now,
            model_version=version.version,
            health_score=score,
            health_components=components,
            confidence=confidence(probability),
            inputs_digest=digest,
        )
    drop = None
    old_level = risk_level(float(one.churn_risk or 0))
    if one.health_score is not None and one.health_score > score:  # the threshold matters only then
        if not one.settings_read:
            drop = notification_settings_get().health_drop_points
        else:  # read with the facts; no saved row means the defaults
            drop = one.health_drop_points
            if drop is None:
                drop = NotificationSettings().health_drop_points
    alerts = _alerts_for(
        customer_id, probability, level, score, causes, (one.churn_risk, one.name, one.health_score, one.owner_id), drop
    )
    if one.latest is not None and one.latest[2] != version.version:
        alerts = []  # the first score by a new model: a change of model, not of the customer
    # Alerts raised earlier can only clear when the risk level fell or the health score rose.
    resolve = LEVEL_RANK[level] < LEVEL_RANK[old_level] or (one.health_score is not None and score > one.health_score)
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "risk": risk,
        "level": level,
        "causes": causes,
        "now": now,
        "version": version,
        "score": score,
        "components": components,
        "confidence": confidence(probability),
        "rises": sum(1 for alert in alerts if alert["source"] == "risk_rise"),
        "digest": digest,
    }
    if alerts or resolve:
        with transaction.atomic():
            prediction = _write_one(**values)
            if resolve:
                alerts_resolve_cleared(customer_ids=[customer_id], now=now)
            if alerts:
                alerts_create_many(alerts=alerts)
    else:  # one statement, atomic on its own: no BEGIN/COMMIT round trips
        prediction = _write_one(**values)
    events.publish_on_commit(events.CustomersScored(run_id=prediction.run_id, customer_ids=[customer_id]))
    return prediction


# PostgreSQL: the run, the prediction and the customer's scores in ONE statement (one round trip,
# atomic by itself). An unchanged score rewrites nothing (see customer_scores_set).
_WRITE_ONE_POSTGRES = """
WITH run AS (
  INSERT INTO prediction_runs (run_key, trigger, status, model_version_id, started_at, finished_at,
    customers_scored, risk_rises, timings, drift, error)
  VALUES (%(run_key)s, 'event', 'completed', %(version_id)s, %(now)s, clock_timestamp(), 1, %(rises)s, '{}', '{}', '')
  RETURNING id
), prediction AS (
  INSERT INTO churn_predictions (customer_id, churn_probability, risk_level, top_causes, prediction_date,
    model_version, health_score, health_components, confidence, inputs_digest, run_id)
  SELECT %(customer_id)s, %(risk)s, %(level)s, %(causes)s, %(now)s, %(version)s, %(score)s, %(components)s,
    %(confidence)s, %(digest)s, run.id FROM run
  RETURNING id
), scores AS (
  UPDATE customers SET churn_risk = %(risk)s, health_score = %(score)s, updated_at = clock_timestamp()
  WHERE id = %(customer_id)s
    AND (churn_risk, health_score) IS DISTINCT FROM (%(risk)s::numeric(5, 4), %(score)s::integer)
)
SELECT (SELECT id FROM prediction), (SELECT id FROM run)
"""


def _write_one(
    *,
    customer_id: int,
    risk: Decimal,
    level: str,
    causes: list[dict],
    now: dt.datetime,
    version: ModelVersion,
    score: int,
    components: dict,
    confidence: float,
    rises: int,
    digest: str,
) -> ChurnPrediction:
    run_key = uuid.uuid4().hex
    run = PredictionRun(
        run_key=run_key,
        trigger=PredictionRun.Trigger.EVENT,
        status=PredictionRun.Status.COMPLETED,
        model_version_id=version.pk,
        started_at=now,
        customers_scored=1,
        risk_rises=rises,
    )
    prediction = ChurnPrediction(
        customer_id=customer_id,
        churn_probability=risk,
        risk_level=level,
        top_causes=causes,
        prediction_date=now,
        model_version=version.version,
        health_score=score,
        health_components=components,
        confidence=confidence,
        inputs_digest=digest,
    )
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        params: dict[str, Any] = {
            "run_key": run_key,
            "version_id": version.pk,
            "now": now,
            "rises": rises,
            "customer_id": customer_id,
            "risk": risk,
            "level": level,
            "causes": Jsonb(causes),
            "version": version.version,
            "score": score,
            "components": Jsonb(components),
            "confidence": confidence,
            "digest": digest,
        }
        with connection.cursor() as cursor:
            cursor.execute(_WRITE_ONE_POSTGRES, params)
            prediction.pk, run.pk = cursor.fetchone()
    else:
        with transaction.atomic():
            run.finished_at = timezone.now()
            run.save(force_insert=True)
            prediction.run = run
            prediction.save(force_insert=True)
            customer_scores_set(scores=[(customer_id, risk, score)])
    prediction.run = run
    return prediction
