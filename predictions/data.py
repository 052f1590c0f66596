"""Bulk reads from the database into the ML core's frames (`predictions.ml.tables.Tables`).

One query per table, whatever the number of customers; nothing here loops over customers.
"""

import io
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
from django.db import connection
from django.db.models import F, Func, IntegerField, QuerySet

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


def _copy_frame(rows: QuerySet, columns: list[str]) -> pd.DataFrame:
    """PostgreSQL: stream the query out with COPY and parse it in C (pandas), not row by row in Python."""
    sql, params = rows.values_list(*columns).query.sql_with_params()
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    if not data:
        return pd.DataFrame(columns=columns)
    return pd.read_csv(io.BytesIO(data), names=columns, header=None, keep_default_na=False, na_values=[""])


def _frame(rows: QuerySet, columns: list[str], times: Iterable[str] = ()) -> pd.DataFrame:
    if connection.vendor == "postgresql":
        frame = _copy_frame(rows, columns)
    else:
        frame = pd.DataFrame.from_records(list(rows.values_list(*columns)), columns=columns)
    for column in times:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    if "customer_id" in frame:
        frame["customer_id"] = frame["customer_id"].astype("int64")
    return frame


def load_tables(*, customer_ids: Iterable[int] | None = None) -> Tables:
    """Every time-stamped fact the features need, for all customers or the listed ones."""
    customers = Customer.objects.all()
    if customer_ids is not None:
        customers = customers.filter(pk__in=list(customer_ids))
    ids = customers.values("pk")

    customer_frame = _frame(
        customers.order_by("pk").annotate(customer_id=F("pk")),
        ["customer_id", "signup_date", "plan", "mrr", "churned_at", "feature_usage"],
        times=["signup_date", "churned_at"],
    )
    customer_frame["mrr"] = customer_frame["mrr"].astype(float)
    customer_frame["plan"] = customer_frame["plan"].fillna("").astype(str)
    # COPY hands JSON over as text; the ORM path has already decoded it.
    customer_frame["feature_usage"] = customer_frame["feature_usage"].map(
        lambda value: json.loads(value) if isinstance(value, str) else (value or {})
    )

    sessions = _frame(
        UserSession.objects.filter(customer_id__in=ids).annotate(n_actions=JSONArrayLength("actions")),
        ["customer_id", "started_at", "ended_at", "pages_viewed", "n_actions"],
        times=["started_at", "ended_at"],
    )
    tickets = _frame(
        SupportTicket.objects.filter(customer_id__in=ids),
        ["customer_id", "opened_at", "solved_at", "priority"],
        times=["opened_at", "solved_at"],
    )
    nps = _frame(
        NpsResponse.objects.filter(customer_id__in=ids),
        ["customer_id", "responded_at", "score"],
        times=["responded_at"],
    )
    billing = _frame(
        BillingEvent.objects.filter(customer_id__in=ids),
        ["customer_id", "occurred_at", "kind", "amount", "mrr_after"],
        times=["occurred_at"],
    )
    billing["amount"] = billing["amount"].astype(float)
    billing["mrr_after"] = pd.to_numeric(billing["mrr_after"], errors="coerce").astype(float)
    interventions = _frame(
        Intervention.objects.filter(customer_id__in=ids),
        ["customer_id", "created_at", "completed_at", "outcome"],
        times=["created_at", "completed_at"],
    )
    return Tables(
        customers=customer_frame,
        sessions=sessions,
        tickets=tickets,
        nps=nps,
        billing=billing,
        interventions=interventions,
    )
