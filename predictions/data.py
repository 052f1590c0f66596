"""Bulk reads from the database into the ML core's frames (`predictions.ml.tables.Tables`).

One query per table, whatever the number of customers; nothing here loops over customers.
"""

import datetime as dt
import io
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
from django.db import connection
from django.db.models import F, Func, IntegerField, Max, QuerySet

from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from interventions.models import Intervention
from predictions.ml.tables import Tables


class JSONArrayLength(Func):
    """Length of a JSON array column, computed by the database."""

    output_field = IntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="jsonb_array_length", **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="json_array_length", **extra)


def _copy_frame(rows: QuerySet, columns: list[str], times: Iterable[str]) -> pd.DataFrame:
    """PostgreSQL: stream the query out with COPY and parse it in C (pandas), not row by row in
    Python. Timestamps travel as epoch microseconds: integers parse several times faster than
    ISO text."""
    sql, params = rows.values_list(*columns).query.sql_with_params()
    times = set(times)
    outer = ", ".join(f'(EXTRACT(EPOCH FROM q."{c}") * 1000000)::bigint' if c in times else f'q."{c}"' for c in columns)
    statement = f"COPY (SELECT {outer} FROM ({sql}) AS q) TO STDOUT WITH (FORMAT csv)"  # noqa: S608 (our own columns)
    with connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    if not data:
        return pd.DataFrame(columns=columns)
    frame = pd.read_csv(io.BytesIO(data), names=columns, header=None, keep_default_na=False, na_values=[""])
    for column in times:
        frame[column] = pd.to_datetime(frame[column], unit="us", utc=True)
    return frame


def _frame(rows: QuerySet, columns: list[str], times: Iterable[str] = (), *, bulk: bool = True) -> pd.DataFrame:
    """`bulk`: COPY on PostgreSQL. For a handful of customers (real-time scoring) plain rows are
    faster: COPY's CSV round trip has a fixed cost of a few milliseconds per table."""
    copied = bulk and connection.vendor == "postgresql"
    if copied:
        frame = _copy_frame(rows, columns, times)
    else:
        frame = pd.DataFrame.from_records(list(rows.values_list(*columns)), columns=columns)
    for column in times:
        if not copied:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        frame[column] = frame[column].astype("datetime64[ns, UTC]")
    if "customer_id" in frame:
        frame["customer_id"] = frame["customer_id"].astype("int64")
    return frame


# Session features look back at most 90 days, plus the date of the last session (see
# predictions/ml/features.py); scoring therefore needs only this window and one "last session"
# row per customer, not the whole history (10M rows become about a quarter of that).
SESSION_WINDOW_DAYS = 91
SMALL_LOAD = 50  # customers; up to this many, rows travel through the ORM instead of COPY


def load_tables(*, customer_ids: Iterable[int] | None = None, as_of: dt.datetime | None = None) -> Tables:
    """Every time-stamped fact the features need, for all customers or the listed ones.

    With `as_of` (scoring), sessions are limited to what features at `as_of` can see: those of
    the last SESSION_WINDOW_DAYS, plus, per customer, their latest earlier session (as a row with
    only its start time) so recency and "never active" stay exact. Training passes no `as_of`:
    its cutoffs reach back further.
    """
    customers = Customer.objects.all()
    if customer_ids is not None:
        customer_ids = list(customer_ids)
        customers = customers.filter(pk__in=customer_ids)
    ids = customers.values("pk")
    bulk = customer_ids is None or len(customer_ids) > SMALL_LOAD

    customer_frame = _frame(
        customers.order_by("pk").annotate(customer_id=F("pk")),
        ["customer_id", "signup_date", "plan", "mrr", "churned_at", "feature_usage"],
        times=["signup_date", "churned_at"],
        bulk=bulk,
    )
    customer_frame["mrr"] = customer_frame["mrr"].astype(float)
    customer_frame["plan"] = customer_frame["plan"].fillna("").astype(str)
    # COPY hands JSON over as text; the ORM path has already decoded it.
    customer_frame["feature_usage"] = customer_frame["feature_usage"].map(
        lambda value: json.loads(value) if isinstance(value, str) else (value or {})
    )

    session_columns = ["customer_id", "started_at", "ended_at", "pages_viewed", "n_actions"]
    all_sessions = UserSession.objects.filter(customer_id__in=ids)
    if as_of is None:
        sessions = _frame(
            all_sessions.annotate(n_actions=JSONArrayLength("actions")),
            session_columns,
            times=["started_at", "ended_at"],
            bulk=bulk,
        )
    else:
        window_start = as_of - dt.timedelta(days=SESSION_WINDOW_DAYS)
        recent = _frame(
            all_sessions.filter(started_at__gte=window_start, started_at__lte=as_of).annotate(
                n_actions=JSONArrayLength("actions")
            ),
            session_columns,
            times=["started_at", "ended_at"],
            bulk=bulk,
        )
        earlier = _frame(
            all_sessions.filter(started_at__lt=window_start)
            .values("customer_id")
            .annotate(last_started_at=Max("started_at")),
            ["customer_id", "last_started_at"],
            times=["last_started_at"],
            bulk=bulk,
        ).rename(columns={"last_started_at": "started_at"})
        earlier["ended_at"] = pd.Series(pd.NaT, index=earlier.index, dtype="datetime64[ns, UTC]")
        earlier["pages_viewed"] = 0
        earlier["n_actions"] = 0
        sessions = pd.concat([recent, earlier[session_columns]], ignore_index=True)
    tickets = _frame(
        SupportTicket.objects.filter(customer_id__in=ids),
        ["customer_id", "opened_at", "solved_at", "priority"],
        times=["opened_at", "solved_at"],
        bulk=bulk,
    )
    nps = _frame(
        NpsResponse.objects.filter(customer_id__in=ids),
        ["customer_id", "responded_at", "score"],
        times=["responded_at"],
        bulk=bulk,
    )
    billing = _frame(
        BillingEvent.objects.filter(customer_id__in=ids),
        ["customer_id", "occurred_at", "kind", "amount", "mrr_after"],
        times=["occurred_at"],
        bulk=bulk,
    )
    billing["amount"] = billing["amount"].astype(float)
    billing["mrr_after"] = pd.to_numeric(billing["mrr_after"], errors="coerce").astype(float)
    interventions = _frame(
        Intervention.objects.filter(customer_id__in=ids),
        ["customer_id", "created_at", "completed_at", "outcome"],
        times=["created_at", "completed_at"],
        bulk=bulk,
    )
    return Tables(
        customers=customer_frame,
        sessions=sessions,
        tickets=tickets,
        nps=nps,
        billing=billing,
        interventions=interventions,
    )
