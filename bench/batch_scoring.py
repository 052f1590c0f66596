"""Benchmark: the daily batch score (load → features → predict → explain → write) end to end,
against a naive per-customer ORM loop and, for the write-back, a raw binary COPY.

    .venv/bin/python bench/batch_scoring.py                        # 100,000 customers, ~10M sessions
    BENCH_CUSTOMERS=20000 .venv/bin/python bench/batch_scoring.py  # smaller book

Needs PostgreSQL (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/churnshield_batchbench; created when missing). The book is
seeded once (`seed_demo --seed 1 --activity-scale BENCH_ACTIVITY_SCALE`, default 1.0) and reused
while its customer count matches BENCH_CUSTOMERS. Every run writes a new batch run (a unique
run key) and, for the naive sample, BENCH_NAIVE_SAMPLE (default 1,000) predictions.
Prints the batch's timings, the model's share of them, the speed-up over the naive loop and the
write-back rate against raw COPY, next to the targets.
"""

import os
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, BenchDatabase

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_batchbench")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
ACTIVITY_SCALE = float(os.environ.get("BENCH_ACTIVITY_SCALE", "1.0"))
NAIVE_SAMPLE = int(os.environ.get("BENCH_NAIVE_SAMPLE", "1000"))
WRITE_ROUNDS = int(os.environ.get("BENCH_WRITE_ROUNDS", "3"))
DB = BenchDatabase(DATABASE_URL, CUSTOMERS, ACTIVITY_SCALE)


def prepare() -> None:
    """The seeded book (reused when it matches) and a trained champion."""
    DB.prepare()
    started = time.perf_counter()
    print(DB.manage("train_model", "--if-no-model").strip(), f"({time.perf_counter() - started:.0f} s)", flush=True)
    # Earlier runs of this bench left dead rows behind (its write-back rounds roll back): clear them
    # as autovacuum would between two daily batches, so runs measure the same table state.
    DB.psql("VACUUM ANALYZE churn_predictions, customers, alerts, prediction_runs")


def setup_django() -> None:
    """Configure Django in this process against the bench database. Celery is not eager (as in
    production): the tasks a batch enqueues after commit (playbook trigger rules) go to an
    in-process broker and are a worker's job, not the batch's; the aggregates the batch itself
    refreshes after commit (causes, portfolio snapshot) stay in the measured time."""
    os.environ.update(
        {
            "DATABASE_URL": DATABASE_URL,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "REDIS_URL": "",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_BROKER_URL": "memory://",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def run_batch() -> tuple[Any, float]:
    """The real batch, all active customers, under a unique run key; returns (run, wall seconds)."""
    from predictions.services.scoring import score_customers

    started = time.perf_counter()
    run = score_customers(run_key=f"bench:{uuid.uuid4().hex}")
    return run, time.perf_counter() - started


def _times(frame: Any, columns: list[str]) -> Any:
    """Timestamp columns as UTC datetime64[ns], the way `load_tables` hands them over."""
    import pandas as pd

    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
    if "customer_id" in frame:
        frame["customer_id"] = frame["customer_id"].astype("int64")
    return frame


def naive_loop(customer_ids: list[int]) -> float:
    """One customer at a time through the ORM, as a naive job would do it; returns seconds.

    Per customer: its row, sessions, tickets, NPS answers and billing events (one
    query each), a one-row feature frame, the model's probability and health score, then a
    stored prediction and `customer.save(update_fields=...)`. It skips the explanation the batch
    computes, so the speed-up it yields is a lower bound.
    """
    import pandas as pd
    from django.utils import timezone

    from customers.models import Customer
    from predictions.ml import rules
    from predictions.ml.features import build_features, usage_features
    from predictions.ml.tables import Tables
    from predictions.models import ChurnPrediction, PredictionRun
    from predictions.selectors import champion
    from predictions.services.registry import loaded_model
    from predictions.services.scoring import confidence, risk_level

    version = champion()
    model = loaded_model(version)
    now = timezone.now()
    run = PredictionRun.objects.create(
        run_key=f"bench-naive:{uuid.uuid4().hex}",
        trigger=PredictionRun.Trigger.MANUAL,
        model_version=version,
        started_at=now,
    )
    started = time.perf_counter()
    for customer_id in customer_ids:
        customer = Customer.objects.get(pk=customer_id)
        sessions = [
            (s.customer_id, s.started_at, s.ended_at, s.pages_viewed, len(s.actions or []))
            for s in customer.sessions.all()
        ]
        tickets = [(t.customer_id, t.opened_at, t.solved_at, t.priority) for t in customer.tickets.all()]
        nps = [(n.customer_id, n.responded_at, n.score) for n in customer.nps_responses.all()]
        billing = [
            (b.customer_id, b.occurred_at, b.kind, float(b.amount), None if b.mrr_after is None else float(b.mrr_after))
            for b in customer.billing_events.all()
        ]
        tables = Tables(
            customers=_times(
                pd.DataFrame(
                    [
                        (
                            customer.pk,
                            customer.signup_date,
                            customer.plan,
                            float(customer.mrr),
                            customer.churned_at,
                            customer.feature_usage or {},
                        )
                    ],
                    columns=["customer_id", "signup_date", "plan", "mrr", "churned_at", "feature_usage"],
                ),
                ["signup_date", "churned_at"],
            ),
            sessions=_times(
                pd.DataFrame(sessions, columns=["customer_id", "started_at", "ended_at", "pages_viewed", "n_actions"]),
                ["started_at", "ended_at"],
            ),
            tickets=_times(
                pd.DataFrame(tickets, columns=["customer_id", "opened_at", "solved_at", "priority"]),
                ["opened_at", "solved_at"],
            ),
            nps=_times(pd.DataFrame(nps, columns=["customer_id", "responded_at", "score"]), ["responded_at"]),
            billing=_times(
                pd.DataFrame(billing, columns=["customer_id", "occurred_at", "kind", "amount", "mrr_after"]),
                ["occurred_at"],
            ),
        )
        features = build_features(tables, pd.Timestamp(now))
        if features.empty:  # churned since the sample was drawn
            continue
        probability = float(model.predict_proba(features)[0])
        health = rules.health_components(features.join(usage_features(tables)))
        score = int(health["health_score"].iloc[0])
        ChurnPrediction.objects.create(
            run=run,
            customer=customer,
            churn_probability=Decimal(f"{probability:.4f}"),
            risk_level=risk_level(probability),
            top_causes=[],
            prediction_date=now,
            model_version=version.version,
            health_score=score,
            confidence=confidence(probability),
        )
        customer.churn_risk, customer.health_score = Decimal(f"{probability:.4f}"), score
        customer.save(update_fields=["churn_risk", "health_score", "updated_at"])
    return time.perf_counter() - started


def write_rates(rows: list[tuple[int, Decimal, int]]) -> tuple[float, float]:
    """Median seconds of `customer_scores_set` (rolled back) and of a raw binary COPY of the same rows."""
    from django.db import connection, transaction

    from customers.services import customer_scores_set

    service, raw = [], []
    for _ in range(WRITE_ROUNDS):
        with transaction.atomic():
            started = time.perf_counter()
            customer_scores_set(scores=rows)
            service.append(time.perf_counter() - started)
            transaction.set_rollback(True)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE bench_scores_raw"
                " (id integer, churn_risk numeric(5, 4), health_score integer) ON COMMIT DROP"
            )
            started = time.perf_counter()
            with cursor.cursor.copy(
                "COPY bench_scores_raw (id, churn_risk, health_score) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int4", "numeric", "int4"])
                for row in rows:
                    copy.write_row(row)
            raw.append(time.perf_counter() - started)
            transaction.set_rollback(True)
    return statistics.median(service), statistics.median(raw)


def full_write_rates(run: Any) -> tuple[float, float, int]:
    """The batch's whole write-back — its prediction rows (COPY) and the customers' scores (COPY +
    UPDATE … FROM) — against a raw binary COPY of the same rows into bare temporary tables. Median
    seconds of each (rolled back) and the prediction rows' mean size in bytes."""
    from django.db import connection, transaction
    from psycopg.types.json import Jsonb

    from customers.services import customer_scores_set
    from predictions.models import ChurnPrediction, PredictionRun
    from predictions.services.scoring import PREDICTION_COLUMNS, _insert_predictions

    rows = list(ChurnPrediction.objects.filter(run=run).values_list(*PREDICTION_COLUMNS))
    scores = [(row[0], row[1], (row[6] + 1) % 101) for row in rows]
    with connection.cursor() as cursor:
        cursor.execute("SELECT avg(pg_column_size(p.*))::int FROM churn_predictions p WHERE run_id = %s", [run.pk])
        row_bytes = cursor.fetchone()[0]
    service, raw = [], []
    for _ in range(WRITE_ROUNDS):
        with transaction.atomic():
            # A run of its own (rolled back with the rest): one prediction per customer per run.
            again = PredictionRun.objects.create(
                run_key=f"bench-write:{uuid.uuid4().hex}", model_version=run.model_version, started_at=run.started_at
            )
            started = time.perf_counter()
            _insert_predictions(again, rows)
            customer_scores_set(scores=scores)
            service.append(time.perf_counter() - started)
            transaction.set_rollback(True)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE bench_predictions_raw (customer_id integer, churn_probability numeric(5, 4),"
                " risk_level text, top_causes jsonb, prediction_date timestamptz, model_version text,"
                " health_score integer, health_components jsonb, confidence double precision, run_id integer)"
                " ON COMMIT DROP"
            )
            cursor.execute(
                "CREATE TEMPORARY TABLE bench_scores_raw"
                " (id integer, churn_risk numeric(5, 4), health_score integer) ON COMMIT DROP"
            )
            started = time.perf_counter()
            columns = ", ".join((*PREDICTION_COLUMNS, "run_id"))
            with cursor.cursor.copy(f"COPY bench_predictions_raw ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(
                    ["int4", "numeric", "text", "jsonb", "timestamptz", "text", "int4", "jsonb", "float8", "int4"]
                )
                for row in rows:
                    copy.write_row((*row[:3], Jsonb(row[3]), *row[4:7], Jsonb(row[7]), row[8], run.pk))
            with cursor.cursor.copy(
                "COPY bench_scores_raw (id, churn_risk, health_score) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int4", "numeric", "int4"])
                for row in scores:
                    copy.write_row(row)
            raw.append(time.perf_counter() - started)
            transaction.set_rollback(True)
    return statistics.median(service), statistics.median(raw), row_bytes


def explanation_policy(run: Any, sample_size: int = 2000) -> dict[str, float]:
    """ADR 0006's budget, measured: the batch's explanation time against its prediction time, and
    the agreement of the stored causes' top 3 with exact tree SHAP on a sample of customers."""
    import pandas as pd

    from predictions.data import load_tables
    from predictions.ml.explain import exact_rows, explain_batch, explain_exact, listable, top_causes_agreement
    from predictions.ml.features import build_features
    from predictions.services.registry import loaded_model

    model = loaded_model(run.model_version)
    timings = run.timings
    out = {"cost": timings["explain_s"] / timings["predict_s"], "agreement": float("nan"), "exact_share": 1.0}
    if model is None or model.booster is None:  # the rules baseline or a linear model: always exact
        out["agreement"] = 1.0
        return out
    from customers.models import Customer

    active = sorted(Customer.objects.filter(churned_at__isnull=True).values_list("pk", flat=True))
    sample = random.Random(2).sample(active, min(sample_size, len(active)))
    X = build_features(load_tables(customer_ids=sample, as_of=run.started_at), pd.Timestamp(run.started_at))
    p = model.predict_proba(X)
    out["agreement"] = top_causes_agreement(explain_batch(model, X, p), explain_exact(model, X))
    listed = listable(
        X.reindex(columns=model.feature_names).to_numpy(dtype=float), model.feature_names, model.healthy_reference
    )
    approx = model.contributions(X, approx=True)
    out["exact_share"] = float(exact_rows(approx, model.feature_names, p, listed=listed).mean())
    return out


def main() -> None:
    """Prepare the database, then measure and print."""
    prepare()
    setup_django()
    from customers.models import Customer, UserSession
    from predictions.models import ChurnPrediction

    print("running the batch...", flush=True)
    run, total = run_batch()
    timings = run.timings
    scored = run.customers_scored
    print(f"batch done: {scored:,} customers in {total:.1f} s", flush=True)

    active = sorted(Customer.objects.filter(churned_at__isnull=True).values_list("pk", flat=True))
    sample = random.Random(1).sample(active, min(NAIVE_SAMPLE, len(active)))
    print(f"running the naive loop on {len(sample):,} customers...", flush=True)
    naive_s = naive_loop(sample)

    rows = list(ChurnPrediction.objects.filter(run=run).values_list("customer_id", "churn_probability", "health_score"))
    # Every row must really change: customer_scores_set skips scores that are already stored.
    rows = [(pk, risk, (health + 1) % 101) for pk, risk, health in rows]
    print(f"timing the write-back of {len(rows):,} rows ({WRITE_ROUNDS} rounds each)...", flush=True)
    service_s, raw_s = write_rates(rows)

    print("timing the whole write-back (predictions + scores) against raw COPY...", flush=True)
    full_s, full_raw_s, row_bytes = full_write_rates(run)
    print("measuring the explanation policy...", flush=True)
    policy = explanation_policy(run)

    parts = ["load_s", "features_s", "predict_s", "explain_s", "health_s", "write_s"]
    accounted = sum(timings.get(part, 0.0) for part in parts)
    model_share = (timings.get("predict_s", 0.0) + timings.get("explain_s", 0.0)) / total
    ml_share = (timings.get("features_s", 0.0) + timings.get("predict_s", 0.0) + timings.get("explain_s", 0.0)) / total
    batch_rate, naive_rate = scored / total, len(sample) / naive_s
    service_rate, raw_rate = len(rows) / service_s, len(rows) / raw_s
    sessions = UserSession.objects.count()

    print(f"\n{CUSTOMERS:,} customers ({scored:,} active scored), {sessions:,} sessions, PostgreSQL, one process")
    print(f"model: {run.model_version.version}")
    print("\nbatch (score_customers), seconds")
    for part in parts:
        value = timings.get(part, 0.0)
        print(f"  {part[:-2]:10} {value:8.2f}  {value / total:6.1%}")
    other = total - accounted
    print(f"  {'other':10} {other:8.2f}  {other / total:6.1%}  (run bookkeeping, on-commit aggregates)")
    print("  (model = predict + explain: calibrated probabilities, tree SHAP contributions and their")
    print("   ranking into causes; health = the health score and the drift check, not the model)")
    print(f"  {'total':10} {total:8.2f}  {batch_rate:,.0f} customers/s")
    print(f"\nmodel share (predict + explain) / total: {model_share:.2f}")
    print(f"ML share (features + predict + explain) / total: {ml_share:.2f}")
    print(f"\nnaive ORM loop: {len(sample):,} customers in {naive_s:.1f} s = {naive_rate:,.1f} customers/s")
    print(f"batch: {batch_rate:,.0f} customers/s -> speed-up {batch_rate / naive_rate:,.0f}x")
    print(f"\nwrite-back of {len(rows):,} (customer_id, churn_risk, health_score) rows, median of {WRITE_ROUNDS}")
    print(f"  customer_scores_set (COPY + UPDATE FROM): {service_s:6.2f} s = {service_rate:10,.0f} rows/s")
    print(f"  raw binary COPY into a temporary table:   {raw_s:6.2f} s = {raw_rate:10,.0f} rows/s")
    print(f"  ratio: {service_rate / raw_rate:.2f}x")
    full_ratio = full_raw_s / full_s
    print(f"\nwhole write-back: {len(rows):,} prediction rows (mean {row_bytes} B) + the customers' scores")
    print(f"  _insert_predictions + customer_scores_set:  {full_s:6.2f} s")
    print(f"  raw binary COPY of the same rows:           {full_raw_s:6.2f} s")
    print(f"  ratio: {full_ratio:.2f}x")
    print(f"\nexplanations (ADR 0006): explain / predict over the batch = {policy['cost']:.1f}x;")
    agreement, share = policy["agreement"], policy["exact_share"]
    print(f"  top-3 causes vs exact SHAP on a sample: {agreement:.3f} (share explained exactly {share:.2f})")
    print("\nsummary (measured | target)")
    print(f"  full batch:          {total:8.1f} s   | < 60 s")
    print(f"  model share:         {model_share:8.2f}     | >= 0.4")
    print(f"  naive-loop speed-up: {batch_rate / naive_rate:8,.0f}x    | >= 100x")
    print(f"  write-back vs COPY:  {service_rate / raw_rate:8.2f}x    | >= 0.25x   (customers' scores)")
    print(f"  whole write-back:    {full_ratio:8.2f}x    | >= 0.25x   (predictions + scores)")
    print(f"  explain / predict:   {policy['cost']:8.1f}x    | <= 50x")
    print(f"  top-3 agreement:     {policy['agreement']:8.3f}     | >= 0.90")
    print(f"  load average:        {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
