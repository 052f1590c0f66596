"""Bulk reads from the database into the ML core's frames (`predictions.ml.tables.Tables`).

One query per table, whatever the number of customers; nothing here loops over customers.
"""

import datetime as dt
import hashlib
import io
import json
import os
import struct
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
import pandas as pd
from django.db import connection
from django.db.models import Count, F, Func, IntegerField, Max, QuerySet

from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from predictions.ml.features import ACTION_WINDOWS_DAYS
from predictions.ml.tables import Columns, Tables
from predictions.models import ChurnPrediction


class JSONArrayLength(Func):
    """Length of a JSON array column, computed by the database; 0 for anything that is not an
    array (one malformed row must not stop a whole book's read)."""

    output_field = IntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            "CASE WHEN jsonb_typeof(%(expressions)s) = 'array' THEN jsonb_array_length(%(expressions)s) ELSE 0 END"
        )
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            "CASE WHEN json_valid(%(expressions)s) AND json_type(%(expressions)s) = 'array'"
            " THEN json_array_length(%(expressions)s) ELSE 0 END"
        )
        return self.as_sql(compiler, connection, template=template, **extra)


def _copy_frame(rows: QuerySet, columns: list[str], times: Iterable[str]) -> pd.DataFrame:
    """PostgreSQL: stream the query out with COPY and parse it in C (pandas), not row by row in
    Python."""
    sql, params = rows.values_list(*columns).query.sql_with_params()
    return _copy_sql(sql, params, columns, times)


def _copy_sql(
    sql: str, params: Iterable[Any], columns: list[str], times: Iterable[str], texts: Iterable[str] = ()
) -> pd.DataFrame:
    """`_copy_frame` of a statement. Timestamps travel as epoch microseconds: integers parse
    several times faster than ISO text. `texts`: columns kept as text whatever they hold
    (an action type "01" stays "01")."""
    times = set(times)
    outer = ", ".join(f'(EXTRACT(EPOCH FROM q."{c}") * 1000000)::bigint' if c in times else f'q."{c}"' for c in columns)
    statement = f"COPY (SELECT {outer} FROM ({sql}) AS q) TO STDOUT WITH (FORMAT csv)"  # noqa: S608 (our own columns)
    with connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    if not data:
        return pd.DataFrame(columns=columns)
    frame = pd.read_csv(
        io.BytesIO(data),
        names=columns,
        header=None,
        keep_default_na=False,
        na_values={column: [""] for column in columns if column not in texts},
        dtype=dict.fromkeys(texts, str),
    )
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


# Sessions travel as ONE bytea per part, packed by PostgreSQL from fixed-width big-endian values
# (`int4send`, `timestamptz_send`: microseconds since 2000-01-01 UTC), and are read by numpy in
# one view. A COPY hands every row over as a message of its own, each a step of Python in
# psycopg: 3.2M rows took 5.0 s that way; packed in two parts read side by side, 1.0 s (ADR 0015).
_SESSION_RECORD = np.dtype([("customer_id", ">i4"), ("started", ">i8"), ("pages", ">i4"), ("actions", ">i4")])
_EARLIER_RECORD = np.dtype([("customer_id", ">i4"), ("started", ">i8"), ("n", ">i8")])
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
_NAT_NS = np.iinfo(np.int64).min  # NaT as int64 nanoseconds
_COPY_HEADER, _COPY_TRAILER = 19, 2  # signature + flags + extension length; the -1 field count
# The scoring load reads its tables side by side, each on a connection (and backend) of its own,
# and the sessions table in LOAD_PARTS ranges of its heap: the packing is CPU in PostgreSQL.
LOAD_PARTS = max(2, min(4, os.cpu_count() or 2))
LOAD_THREADS = LOAD_PARTS + 2  # measured best on 2 cores (3.4 s against 6.7 s read in turn)

_WINDOW_SESSIONS = (
    "SELECT string_agg(int4send(customer_id) || timestamptz_send(started_at) || int4send(pages_viewed)"
    " || int4send(CASE WHEN jsonb_typeof(actions) = 'array' THEN jsonb_array_length(actions) ELSE 0 END),"
    " ''::bytea) FROM user_sessions"
    " WHERE started_at >= %(start)s AND started_at <= %(as_of)s AND ctid >= %(low)s::tid"
    " AND (%(high)s::tid IS NULL OR ctid < %(high)s::tid)"
    " AND (%(ids)s::int[] IS NULL OR customer_id = ANY(%(ids)s::int[]))"
)
# Each customer's latest start before the window and how many sessions came before it (the
# lifetime rate): an index-only read per customer.
_EARLIER_SESSIONS = (
    "SELECT string_agg(int4send(c.id) || timestamptz_send(e.last) || int8send(e.n), ''::bytea) FROM customers c"
    " CROSS JOIN LATERAL (SELECT MAX(s.started_at) AS last, count(*) AS n FROM user_sessions s"
    "  WHERE s.customer_id = c.id AND s.started_at < %(start)s) e"
    " WHERE e.last IS NOT NULL AND (%(ids)s::int[] IS NULL OR c.id = ANY(%(ids)s::int[]))"
)


# Billing (about ten rows per customer a year) the same way; `kind` travels as its index in
# BillingEvent.Kind (0: a kind we do not know, read as "" — no feature counts it).
_BILLING = (
    "SELECT string_agg(int4send(customer_id) || timestamptz_send(occurred_at)"
    " || int4send(coalesce(array_position(%(kinds)s::text[], kind), 0)) || float8send(amount::float8)"
    " || float8send(coalesce(mrr_after::float8, 'NaN')), ''::bytea) FROM billing_events"
    " WHERE (%(ids)s::int[] IS NULL OR customer_id = ANY(%(ids)s::int[]))"
)
_BILLING_RECORD = np.dtype(
    [("customer_id", ">i4"), ("occurred", ">i8"), ("kind", ">i4"), ("amount", ">f8"), ("mrr_after", ">f8")]
)


def _billing_packed(customer_ids: list[int] | None) -> pd.DataFrame:
    kinds = list(BillingEvent.Kind.values)
    return _billing_frame(_packed(_BILLING, {"kinds": kinds, "ids": customer_ids}, _BILLING_RECORD))


def _billing_frame(rows: np.ndarray) -> pd.DataFrame:
    """The `Tables.billing` frame of packed `_BILLING_RECORD`s."""
    return pd.DataFrame(_billing_columns(rows), copy=False)  # arrays made for it alone: no second copy


_KIND_NAMES = np.array(["", *BillingEvent.Kind.values], dtype=object)


def _billing_columns(rows: np.ndarray) -> dict[str, Any]:
    """The billing table's columns of packed `_BILLING_RECORD`s (the book's frame and one
    customer's `Columns` alike)."""
    occurred = (rows["occurred"].astype(np.int64) + _PG_EPOCH_US) * 1000
    return {
        "customer_id": rows["customer_id"].astype(np.int64),
        "occurred_at": _utc_ns(occurred),
        "kind": _KIND_NAMES[rows["kind"]],
        "amount": rows["amount"].astype(float),
        "mrr_after": rows["mrr_after"].astype(float),
    }


_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def _utc_ns(nanos: np.ndarray) -> pd.arrays.DatetimeArray:
    """int64 nanoseconds since the epoch (NaT: int64's minimum) as a UTC time column, built as an
    array, not through a DatetimeIndex (which costs more, and one customer's read makes four)."""
    return pd.array(nanos.view("datetime64[ns]"), dtype=_UTC_NS)


def _packed(sql: str, params: dict, record: np.dtype) -> np.ndarray:
    """The records of a one-row, one-bytea query, as a numpy record array (no per-row Python)."""
    statement = f"COPY ({sql}) TO STDOUT (FORMAT BINARY)"
    with connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    fields, length = struct.unpack_from(">hi", data, _COPY_HEADER)
    if fields != 1 or len(data) != _COPY_HEADER + 6 + max(length, 0) + _COPY_TRAILER:
        raise ValueError("unexpected binary COPY layout")
    if length < 0:  # NULL: no rows
        return np.empty(0, dtype=record)
    if length % record.itemsize:
        raise ValueError("unexpected packed record size")
    return np.frombuffer(data, dtype=record, offset=_COPY_HEADER + 6, count=length // record.itemsize)


def _session_part_reads(
    customer_ids: list[int] | None, as_of: dt.datetime, parts: int
) -> tuple[list[Callable], Callable]:
    """The reads of the scoring sessions: the feature window in `parts` TID ranges of the heap
    (each a backend of its own when read side by side), then each customer's latest earlier
    start. `_sessions_from_parts` puts them together: the same rows as the generic path
    (`ended_at` is not read: no feature uses it)."""
    window_start = as_of - dt.timedelta(days=SESSION_WINDOW_DAYS)
    base = {"start": window_start, "as_of": as_of, "ids": customer_ids}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size('user_sessions') / current_setting('block_size')::int")
        pages = int(cursor.fetchone()[0])
    # The last range is open: rows added after the size was read are still read.
    bounds = [f"({pages * i // parts},0)" for i in range(parts)] + [None]
    window = [
        partial(_packed, _WINDOW_SESSIONS, {**base, "low": low, "high": high}, _SESSION_RECORD)
        for low, high in pairwise(bounds)
    ]
    return window, partial(_packed, _EARLIER_SESSIONS, base, _EARLIER_RECORD)


def _sessions_from_parts(window_parts: list[np.ndarray], earlier: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(_session_columns(np.concatenate(window_parts), earlier), copy=False)


def _session_columns(window: np.ndarray, earlier: np.ndarray) -> dict[str, Any]:
    """The sessions table's columns of packed window and "latest earlier" records (the book's
    frame and one customer's `Columns` alike)."""
    started = np.concatenate([window["started"], earlier["started"]]).astype(np.int64)
    no_activity = np.zeros(len(earlier), dtype=np.int64)
    return {
        "customer_id": np.concatenate([window["customer_id"], earlier["customer_id"]]).astype(np.int64),
        "started_at": _utc_ns((started + _PG_EPOCH_US) * 1000),
        "ended_at": _utc_ns(np.full(len(started), _NAT_NS)),
        "pages_viewed": np.concatenate([window["pages"].astype(np.int64), no_activity]),
        "n_actions": np.concatenate([window["actions"].astype(np.int64), no_activity]),
        "weight": np.concatenate([np.ones(len(window)), earlier["n"].astype(float)]),
    }


def _on_own_connection(read: Callable[[], Any]) -> Any:
    try:
        return read()
    finally:
        connection.close()  # a worker thread's connection goes back to the pool


def _read_all(reads: dict[str, Callable[[], Any]], *, side_by_side: bool) -> dict[str, Any]:
    """Run the reads, side by side on connections of their own when allowed (see load_tables)."""
    if not side_by_side:
        return {key: read() for key, read in reads.items()}
    with ThreadPoolExecutor(max_workers=LOAD_THREADS, thread_name_prefix="scoring-load") as pool:
        futures = {key: pool.submit(_on_own_connection, read) for key, read in reads.items()}
        return {key: future.result() for key, future in futures.items()}


# The other fact tables: (model, columns, timestamp columns), read the same way.
_FACTS = {
    "tickets": (SupportTicket, ["customer_id", "opened_at", "solved_at", "priority"], ["opened_at", "solved_at"]),
    "nps": (NpsResponse, ["customer_id", "responded_at", "score"], ["responded_at"]),
    "billing": (BillingEvent, ["customer_id", "occurred_at", "kind", "amount", "mrr_after"], ["occurred_at"]),
}


def _usage(value: Any) -> Any:
    """`feature_usage` as read: JSON text decoded, None as {}. orjson refuses numbers beyond a
    double (jsonb keeps 1e400); the stdlib reads those as infinity, as before."""
    if not isinstance(value, str):
        return value or {}
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


# Session actions, one row per session and type: a text element of a session's `actions` list is
# its own type; an object names it in "type" (or "name", "action", "event": the order the
# old-session compaction in monitoring reads them) and may carry a numeric "count".
# Sessions whose `actions` is not an array, and elements naming no type, count nothing.
_ACTION_ELEMENTS_POSTGRES = """user_sessions s
CROSS JOIN LATERAL (
  SELECT CASE WHEN jsonb_typeof(e) = 'string' THEN e #>> '{}'
      ELSE coalesce(e->>'type', e->>'name', e->>'action', e->>'event') END AS type,
    CASE WHEN jsonb_typeof(e) = 'object' AND jsonb_typeof(e->'count') = 'number'
      THEN (e->>'count')::float8 ELSE 1 END AS count
  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(s.actions) = 'array' THEN s.actions ELSE '[]'::jsonb END) e
) a"""
_ACTION_ELEMENTS_SQLITE = """user_sessions s
JOIN (
  SELECT s2.id AS session_id,
    CASE e.type WHEN 'text' THEN e.value WHEN 'object' THEN coalesce(json_extract(e.value, '$.type'),
      json_extract(e.value, '$.name'), json_extract(e.value, '$.action'), json_extract(e.value, '$.event')) END AS type,
    CASE WHEN e.type = 'object' AND json_type(e.value, '$.count') IN ('integer', 'real')
      THEN json_extract(e.value, '$.count') ELSE 1 END AS count
  FROM user_sessions s2, json_each(CASE WHEN json_valid(s2.actions) AND json_type(s2.actions) = 'array'
    THEN s2.actions ELSE '[]' END) e
) a ON a.session_id = s.id"""
_ACTIONS_PER_SESSION = """
SELECT s.customer_id, s.started_at AS at, a.type, sum(a.count) AS count FROM {elements}
WHERE a.type IS NOT NULL AND {where}
GROUP BY s.customer_id, s.started_at, s.id, a.type
"""
# For scoring at one date, the features need per type only the counts in their windows (the last
# 30 days, the 60 before, all earlier: `ACTION_WINDOWS_DAYS`) and the latest date: one row per
# customer, type and window, dated by its latest session, gives the same features as a row per
# session. A row per session would be millions of rows on a large book's daily batch.
_ACTIONS_PER_WINDOW = """
SELECT s.customer_id, max(s.started_at) AS at, a.type, sum(a.count) AS count FROM {elements}
WHERE a.type IS NOT NULL AND {where} AND s.started_at <= {as_of}
GROUP BY s.customer_id, a.type, s.started_at > {recent}, s.started_at > {earlier}
"""


def _action_window_starts(as_of: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    recent, earlier = ACTION_WINDOWS_DAYS
    return as_of - dt.timedelta(days=recent), as_of - dt.timedelta(days=earlier)


def _actions(customer_ids: list[int] | None, as_of: dt.datetime | None) -> pd.DataFrame:
    """The `Tables.actions` frame: a row per session and type; with `as_of` (scoring), a row per
    type and feature window, dated by its latest session."""
    elements = _ACTION_ELEMENTS_POSTGRES if connection.vendor == "postgresql" else _ACTION_ELEMENTS_SQLITE
    where, params = "1 = 1", []
    if customer_ids is not None:
        where = f"s.customer_id IN ({', '.join(['%s'] * len(customer_ids))})"
        params += customer_ids
    if as_of is None:
        sql = _ACTIONS_PER_SESSION.format(elements=elements, where=where)
    else:
        sql = _ACTIONS_PER_WINDOW.format(elements=elements, where=where, as_of="%s", recent="%s", earlier="%s")
        params += [as_of, *_action_window_starts(as_of)]
    columns = ["customer_id", "at", "type", "count"]
    if connection.vendor == "postgresql" and (customer_ids is None or len(customer_ids) > SMALL_LOAD):
        frame = _copy_sql(sql, params, columns, times=["at"], texts=["type"])
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            frame = pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
        frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["at"] = frame["at"].astype("datetime64[ns, UTC]")
    frame["type"] = frame["type"].astype(str)
    frame["count"] = pd.to_numeric(frame["count"], errors="coerce").fillna(1.0).astype(float)
    return frame


def book_has_events() -> bool:
    """Whether any customer has a dated event (a session, ticket, NPS answer or billing event):
    without one the book is a snapshot, and the customers table's own columns are its facts."""
    return any(model.objects.exists() for model in (UserSession, SupportTicket, NpsResponse, BillingEvent))


def _customers_finished(frame: pd.DataFrame) -> pd.DataFrame:
    """The customers frame's values as the features read them, whichever way it travelled."""
    frame["mrr"] = pd.to_numeric(frame["mrr"], errors="coerce").astype(float)
    frame["plan"] = frame["plan"].fillna("").astype(str)
    # COPY hands booleans over as text.
    frame["is_active"] = frame["is_active"].map(lambda v: v not in (False, "f", "false", 0))
    # COPY hands JSON over as text (orjson: a third of the stdlib's time on 100k customers); the
    # ORM path has already decoded it.
    frame["feature_usage"] = frame["feature_usage"].map(_usage)
    return frame


CUSTOMER_COLUMNS = [
    "customer_id",
    "signup_date",
    "plan",
    "mrr",
    "churned_at",
    "feature_usage",
    "is_active",
    "last_login",
    "nps_score",
    "support_tickets",
]


def load_tables(
    *, customer_ids: Iterable[int] | None = None, as_of: dt.datetime | None = None, actions: bool = True
) -> Tables:
    """Every time-stamped fact the features need, for all customers or the listed ones.

    With `as_of` (scoring), sessions are limited to what features at `as_of` can see: those of
    the last SESSION_WINDOW_DAYS, plus, per customer, their latest earlier session (as a row with
    only its start time and the number of sessions it stands for) so recency, "never active" and
    lifetime rates stay exact. Training passes no `as_of`: its cutoffs reach back further.
    `actions`: read the sessions' action lists (only a model that counts action types needs them).
    """
    customers = Customer.objects.all()
    if customer_ids is not None:
        customer_ids = list(customer_ids)
        customers = customers.filter(pk__in=customer_ids)
    bulk = customer_ids is None or len(customer_ids) > SMALL_LOAD

    def of_customers(queryset: QuerySet) -> QuerySet:
        # The whole book needs no filter (every fact has a customer): no semi-join to plan.
        return queryset if customer_ids is None else queryset.filter(customer_id__in=customer_ids)

    session_columns = ["customer_id", "started_at", "ended_at", "pages_viewed", "n_actions"]
    all_sessions = of_customers(UserSession.objects.all())
    postgres = connection.vendor == "postgresql"
    packed = bulk and postgres  # facts packed by the database (sessions only when scoring)
    # Side by side only outside a transaction: inside one, only its own connection sees its rows.
    side_by_side = packed and not connection.in_atomic_block
    reads: dict[str, Callable[[], Any]] = {
        "customers": partial(
            _frame,
            customers.order_by("pk").annotate(customer_id=F("pk")),
            CUSTOMER_COLUMNS,
            times=["signup_date", "churned_at", "last_login"],
            bulk=bulk,
        ),
    }
    for name, (model, columns, times) in _FACTS.items():
        reads[name] = partial(_frame, of_customers(model.objects.all()), columns, times=times, bulk=bulk)
    if packed:
        reads["billing"] = partial(_billing_packed, customer_ids)
    if actions:
        reads["actions"] = partial(_actions, customer_ids, as_of)
    if packed and as_of is not None:
        window_reads, earlier_read = _session_part_reads(customer_ids, as_of, LOAD_PARTS if side_by_side else 1)
        reads |= {f"sessions_{i}": read for i, read in enumerate(window_reads)}
        reads["earlier_sessions"] = earlier_read
    elif as_of is None:
        reads["sessions"] = partial(
            _frame,
            all_sessions.annotate(n_actions=JSONArrayLength("actions")),
            session_columns,
            times=["started_at", "ended_at"],
            bulk=bulk,
        )
    else:
        window_start = as_of - dt.timedelta(days=SESSION_WINDOW_DAYS)
        reads["recent_sessions"] = partial(
            _frame,
            all_sessions.filter(started_at__gte=window_start, started_at__lte=as_of).annotate(
                n_actions=JSONArrayLength("actions")
            ),
            session_columns,
            times=["started_at", "ended_at"],
            bulk=bulk,
        )
        reads["earlier_sessions"] = partial(
            _frame,
            all_sessions.filter(started_at__lt=window_start)
            .values("customer_id")
            .annotate(last_started_at=Max("started_at"), weight=Count("id")),
            ["customer_id", "last_started_at", "weight"],
            times=["last_started_at"],
            bulk=bulk,
        )
    read = _read_all(reads, side_by_side=side_by_side)

    customer_frame = _customers_finished(read["customers"])
    if packed and as_of is not None:
        window_parts = [read[key] for key in reads if key.startswith("sessions_")]
        sessions = _sessions_from_parts(window_parts, read["earlier_sessions"])
    elif as_of is None:
        sessions = read["sessions"]
    else:
        earlier = read["earlier_sessions"].rename(columns={"last_started_at": "started_at"})
        earlier["ended_at"] = pd.Series(pd.NaT, index=earlier.index, dtype="datetime64[ns, UTC]")
        earlier["pages_viewed"] = 0
        earlier["n_actions"] = 0
        recent = read["recent_sessions"].assign(weight=1.0)
        sessions = pd.concat([recent, earlier[[*session_columns, "weight"]]], ignore_index=True)
        sessions["weight"] = sessions["weight"].astype(float)
    billing = read["billing"]
    billing["amount"] = pd.to_numeric(billing["amount"], errors="coerce").astype(float)
    billing["mrr_after"] = pd.to_numeric(billing["mrr_after"], errors="coerce").astype(float)
    extra = {"actions": read["actions"]} if actions else {}
    return Tables(
        customers=customer_frame,
        sessions=sessions,
        tickets=read["tickets"],
        nps=read["nps"],
        billing=billing,
        **extra,
    )


# --- One customer (real-time scoring) -----------------------------------------------------------

# Every fact of one customer in ONE statement (a round trip per table and a frame built through the
# ORM for each cost most of a real-time score): the sessions and billing packed exactly as the
# batch packs them, the other tables as JSON text with times as epoch microseconds (what the
# batch's COPY sends). `load_customer_facts` turns it into the batch's tables as `Columns`.
_EPOCH_US = "(EXTRACT(EPOCH FROM {})*1000000)::bigint"
_ONE_FACTS = f"""
SELECT
  (SELECT json_build_array({_EPOCH_US.format("signup_date")}, plan, mrr, {_EPOCH_US.format("churned_at")},
      feature_usage, is_active, {_EPOCH_US.format("last_login")}, nps_score, support_tickets)::text
    FROM customers WHERE id = %(id)s),
  (SELECT string_agg(int4send(customer_id) || timestamptz_send(started_at) || int4send(pages_viewed)
      || int4send(CASE WHEN jsonb_typeof(actions) = 'array' THEN jsonb_array_length(actions) ELSE 0 END),
      ''::bytea ORDER BY started_at, id)
    FROM user_sessions WHERE customer_id = %(id)s AND started_at >= %(start)s AND started_at <= %(as_of)s),
  (SELECT int4send(%(id)s::int) || timestamptz_send(max(started_at)) || int8send(count(*))
    FROM user_sessions WHERE customer_id = %(id)s AND started_at < %(start)s HAVING count(*) > 0),
  (SELECT string_agg(int4send(customer_id) || timestamptz_send(occurred_at)
      || int4send(coalesce(array_position(%(kinds)s::text[], kind), 0)) || float8send(amount::float8)
      || float8send(coalesce(mrr_after::float8, 'NaN')), ''::bytea ORDER BY occurred_at, id)
    FROM billing_events WHERE customer_id = %(id)s),
  (SELECT json_agg(json_build_array({_EPOCH_US.format("opened_at")}, {_EPOCH_US.format("solved_at")}, priority)
      ORDER BY opened_at, id)::text
    FROM support_tickets WHERE customer_id = %(id)s),
  (SELECT json_agg(json_build_array({_EPOCH_US.format("responded_at")}, score) ORDER BY responded_at, id)::text
    FROM nps_responses WHERE customer_id = %(id)s)
"""  # noqa: S608 (no user text in it: the values travel as parameters)
# The session actions as `_actions` reads them for scoring: a row per type and feature window.
_ONE_ACTIONS = """,
  (SELECT json_agg(json_build_array({at}, a.type, a.count) ORDER BY a.at, a.type)::text FROM ({actions}) a)
""".format(  # noqa: S608 (no user text in it: the values travel as parameters)
    at=_EPOCH_US.format("a.at"),
    actions=_ACTIONS_PER_WINDOW.format(
        elements=_ACTION_ELEMENTS_POSTGRES,
        where="s.customer_id = %(id)s",
        as_of="%(as_of)s",
        recent="%(actions_recent)s",
        earlier="%(actions_earlier)s",
    ),
)


def customer_facts_read(customer_id: int, as_of: dt.datetime, *, actions: bool) -> tuple[str, dict[str, Any]]:
    """The statement and parameters of `load_customer_facts`' one read (PostgreSQL)."""
    params = {
        "id": customer_id,
        "start": as_of - dt.timedelta(days=SESSION_WINDOW_DAYS),
        "as_of": as_of,
        "kinds": list(BillingEvent.Kind.values),
    }
    if actions:
        params["actions_recent"], params["actions_earlier"] = _action_window_starts(as_of)
    return _ONE_FACTS + (_ONE_ACTIONS if actions else ""), params


@dataclass(frozen=True)
class OneCustomerFacts:
    """One customer's facts as tables, and (PostgreSQL) a fingerprint of the read they came from:
    the same facts give the same bytes, so it tells "nothing new" without hashing the tables."""

    tables: Tables
    fingerprint: str | None = None


def load_customer_facts(*, customer_id: int, as_of: dt.datetime, actions: bool = True) -> OneCustomerFacts:
    """One customer's facts for scoring at `as_of`: the same tables `load_tables(as_of=...)` builds
    for the whole book, restricted to this customer (tested), in one statement on PostgreSQL.
    Elsewhere (SQLite) `load_tables` for a list of one, and no fingerprint.

    On PostgreSQL each table is a `Columns` of the arrays the batch's frame holds (the sessions
    and billing from the same column builders): a batch of one pays pandas' fixed cost per frame
    and per operation, not per row, and building ten frames cost more than the features."""
    if connection.vendor != "postgresql":
        return OneCustomerFacts(load_tables(customer_ids=[customer_id], as_of=as_of, actions=actions))
    with connection.cursor() as cursor:
        cursor.execute(*customer_facts_read(customer_id, as_of, actions=actions))
        read = cursor.fetchone()
    customer, window, earlier, billing, tickets, nps, *action_rows = read
    fingerprint = hashlib.blake2b(digest_size=16)
    for part in read:
        fingerprint.update(b"\x00" if part is None else bytes(part) if not isinstance(part, str) else part.encode())
        fingerprint.update(b"\x1f")

    found = [] if customer is None else [_usage(customer)]
    signup, plan, mrr, churned, usage, active, last_login, nps_score, open_tickets = (
        list(column) for column in (zip(*found, strict=True) if found else [()] * 9)
    )
    at, types, counts = _json_columns(action_rows[0], 3) if actions else ([], [], [])
    opened, solved, priority = _json_columns(tickets, 3)
    responded, score = _json_columns(nps, 2)
    # Every time column in one conversion (pandas' cost is per call, not per value).
    (signup, churned, last_login, at, opened, solved, responded) = _utc_from_us(
        signup, churned, last_login, at, opened, solved, responded
    )
    customers = Columns(
        {
            "customer_id": np.full(len(found), customer_id, dtype=np.int64),
            "signup_date": signup,
            "plan": np.array(["" if value is None else str(value) for value in plan], dtype=object),
            "mrr": _numbers(mrr),
            "churned_at": churned,
            "feature_usage": np.array([value or {} for value in usage], dtype=object),
            "is_active": np.array([value not in (False, "f", "false", 0) for value in active], dtype=bool),
            "last_login": last_login,
            "nps_score": _numbers(nps_score),
            "support_tickets": _numbers(open_tickets),
        }
    )
    sessions = Columns(_session_columns(_records(window, _SESSION_RECORD), _records(earlier, _EARLIER_RECORD)))
    extra = {}
    if actions:
        extra["actions"] = Columns(
            {
                "customer_id": np.full(len(at), customer_id, dtype=np.int64),
                "at": at,
                "type": np.array([str(value) for value in types], dtype=object),
                "count": np.array([1.0 if value is None else float(value) for value in counts], dtype=float),
            }
        )
    tables = Tables(
        customers=customers,
        sessions=sessions,
        tickets=Columns(
            {
                "customer_id": np.full(len(opened), customer_id, dtype=np.int64),
                "opened_at": opened,
                "solved_at": solved,
                "priority": np.array(priority, dtype=object),
            }
        ),
        nps=Columns(
            {
                "customer_id": np.full(len(responded), customer_id, dtype=np.int64),
                "responded_at": responded,
                "score": _numbers(score),
            }
        ),
        billing=Columns(_billing_columns(_records(billing, _BILLING_RECORD))),
        **extra,
    )
    return OneCustomerFacts(tables, fingerprint.hexdigest())


def load_customer_tables(*, customer_id: int, as_of: dt.datetime, actions: bool = True) -> Tables:
    """`load_customer_facts`' tables."""
    return load_customer_facts(customer_id=customer_id, as_of=as_of, actions=actions).tables


def _json_columns(text: str | None, width: int) -> list[list]:
    """A JSON array of rows (None: no rows) as `width` columns."""
    rows = _usage(text) if text is not None else []
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _numbers(values: list) -> np.ndarray:
    """Numbers as the CSV reader types them: integers stay integers unless one is missing."""
    if any(value is None for value in values):
        return np.array([np.nan if value is None else value for value in values], dtype=float)
    return np.array(values) if values else np.zeros(0, dtype=float)


def _utc_from_us(*columns: list) -> list[pd.arrays.DatetimeArray]:
    """Columns of epoch microseconds (None: NaT) as UTC timestamps, exactly as the COPY path reads
    them: one conversion for all, then a slice (a view) for each."""
    nanos = np.array([_NAT_NS if value is None else value * 1000 for column in columns for value in column], np.int64)
    times = _utc_ns(nanos)
    ends = np.cumsum([len(column) for column in columns]).tolist()
    return [times[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _records(data: bytes | memoryview | None, record: np.dtype) -> np.ndarray:
    """Packed records from a bytea (None: no rows)."""
    if data is None:
        return np.empty(0, dtype=record)
    return np.frombuffer(bytes(data), dtype=record)


# What the real-time path needs besides the facts: the customer's stored scores and owner, and
# the settings scoring reads (the champion, the health weights, the health-drop threshold), in
# one statement on PostgreSQL.
_ONE_POSTGRES = """
SELECT c.churn_risk, c.health_score, c.name, c.owner_id,
  (SELECT ARRAY[id::text, version, kind] FROM model_versions WHERE status = 'champion' LIMIT 1),
  (SELECT ARRAY[usage, engagement, support, nps, billing, tenure] FROM health_score_weights ORDER BY id LIMIT 1),
  (SELECT health_drop_points FROM notification_settings WHERE id = 1),
  (SELECT ARRAY[id::text, inputs_digest, model_version] FROM churn_predictions WHERE customer_id = c.id
    ORDER BY prediction_date DESC, id DESC LIMIT 1)
FROM customers c WHERE c.id = %(customer_id)s
"""


@dataclass(frozen=True)
class OneCustomer:
    """What real-time scoring reads about one customer besides its facts (`load_one`)."""

    customer_id: int
    churn_risk: Any  # the stored values, before this re-score
    health_score: int | None
    name: str
    owner_id: int | None
    # Read in the same statement on PostgreSQL (None elsewhere: the caller uses the selectors):
    champion: tuple[int, str, str] | None = None  # (pk, version, kind); None also when there is none
    weights: dict[str, float] | None = None  # None also when never saved (the defaults apply)
    health_drop_points: int | None = None
    settings_read: bool = False
    # The customer's latest stored prediction: (id, inputs digest, model version), None if none.
    latest: tuple[int, str, str] | None = None


def load_one(*, customer_id: int) -> OneCustomer | None:
    """One customer's stored row (and, on PostgreSQL, the scoring settings); None if there is no
    such customer. Its facts are read by `load_tables`, as for the batch."""
    if connection.vendor != "postgresql":
        row = (
            Customer.objects.filter(pk=customer_id)
            .values_list("churn_risk", "health_score", "name", "owner_id")
            .first()
        )
        if row is None:
            return None
        latest = (
            ChurnPrediction.objects.filter(customer_id=customer_id)
            .order_by("-prediction_date", "-id")
            .values_list("id", "inputs_digest", "model_version")
            .first()
        )
        return OneCustomer(customer_id, *row, latest=latest)
    with connection.cursor() as cursor:
        cursor.execute(_ONE_POSTGRES, {"customer_id": customer_id})
        row = cursor.fetchone()
    if row is None:
        return None
    risk, health, name, owner_id, champ, weights, drop_points, latest = row
    names = ("usage", "engagement", "support", "nps", "billing", "tenure")
    return OneCustomer(
        customer_id,
        risk,
        health,
        name,
        owner_id,
        champion=None if champ is None else (int(champ[0]), champ[1], champ[2]),
        weights=None if weights is None else dict(zip(names, map(float, weights), strict=True)),
        health_drop_points=drop_points,
        settings_read=True,
        latest=None if latest is None else (int(latest[0]), latest[1], latest[2]),
    )
