"""Exporting a book in the import's own formats, so import(export(book)) leaves every table equal.

Each table is streamed from the database in chunks (a server-side cursor on PostgreSQL) straight
into its file; a customer is named in the fact files by its external id, else its e-mail.
"""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Model

from customers.history.kinds import CUSTOMER_FIELDS, KINDS
from customers.history.readers import writer_for
from customers.models import Customer, NpsResponse, Subscription, SupportTicket, UserSession

CHUNK = 5000
FORMATS = ("csv", "jsonl", "parquet")


def _text(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class _Table:
    kind: str
    model: type[Model]
    fields: tuple[str, ...]  # model fields, in the kind's column order ("customer_id" → its reference)


_TABLES = (
    _Table("customers", Customer, CUSTOMER_FIELDS),
    _Table(
        "subscriptions",
        Subscription,
        (
            "external_id",
            "customer_id",
            "plan",
            "mrr",
            "started_at",
            "ended_at",
            "status",
            "bill_period_months",
            "discount",
        ),
    ),
    _Table(
        "user_sessions",
        UserSession,
        ("external_id", "customer_id", "started_at", "ended_at", "pages_viewed", "actions"),
    ),
    _Table(
        "support_tickets",
        SupportTicket,
        ("external_id", "customer_id", "opened_at", "solved_at", "priority", "status", "subject"),
    ),
    _Table(
        "nps_responses",
        NpsResponse,
        ("external_id", "customer_id", "responded_at", "score", "comment"),
    ),
)


def _rows(table: _Table, refs: dict[int, str], owners: dict[int, str], *, typed: bool = False) -> Iterator[list[Any]]:
    """Each row's values: as text for CSV and JSON Lines, or (`typed`) as the database gives them."""
    rows = table.model.objects.order_by("pk").values_list(*table.fields).iterator(chunk_size=CHUNK)
    customer_at = table.fields.index("customer_id") if "customer_id" in table.fields else None
    owner_at = table.fields.index("owner_id") if "owner_id" in table.fields else None
    for row in rows:
        values = list(row) if typed else [_text(v) for v in row]
        if customer_at is not None:
            values[customer_at] = refs[row[customer_at]]
        if owner_at is not None:
            values[owner_at] = owners.get(row[owner_at]) if row[owner_at] else None
        yield values


def export_history(
    *, directory: Path, fmt: str = "csv", progress: Callable[[str, int], Any] | None = None
) -> dict[str, int]:
    """Write one file per kind into `directory`; returns the rows written per kind."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}.")
    directory.mkdir(parents=True, exist_ok=True)
    refs = {
        pk: external_id or email
        for pk, external_id, email in Customer.objects.values_list("pk", "external_id", "email")
    }
    owners = dict(get_user_model().objects.values_list("pk", "username"))
    written: dict[str, int] = {}
    for table in _TABLES:
        columns = list(KINDS[table.kind].columns)
        path = directory / f"{table.kind}.{fmt}"
        count = 0
        if fmt == "parquet":
            count = _write_parquet(path, table, columns, _rows(table, refs, owners, typed=True))
        else:
            with open(path, "w", encoding="utf-8", newline="") as stream:
                write = writer_for(fmt, stream, columns)
                for values in _rows(table, refs, owners):
                    write(values)
                    count += 1
        written[table.kind] = count
        if progress is not None:
            progress(table.kind, count)
    return written


def _arrow_type(field: models.Field) -> Any:
    """The Parquet column type of a model field: typed where readers agree (times in UTC, exact
    decimals, integers, booleans); JSON cells and references as text."""
    if field.is_relation:
        return pa.string()  # a customer's reference or an owner's username
    if isinstance(field, models.DateTimeField):
        return pa.timestamp("us", tz="UTC")
    if isinstance(field, models.DecimalField):
        return pa.decimal128(field.max_digits, field.decimal_places)
    if isinstance(field, models.BooleanField):
        return pa.bool_()
    if isinstance(field, models.IntegerField):
        return pa.int64()
    return pa.string()


def _write_parquet(path: Path, table: _Table, columns: list[str], rows: Iterator[list[Any]]) -> int:
    """Rows written to a Parquet file in row groups of CHUNK rows (bounded memory)."""
    model_fields = [table.model._meta.get_field(name) for name in table.fields]
    schema = pa.schema([(c, _arrow_type(f)) for c, f in zip(columns, model_fields, strict=True)])
    json_at = [i for i, f in enumerate(model_fields) if isinstance(f, models.JSONField)]
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[list[Any]] = []

        def flush() -> None:
            arrays = [pa.array([row[i] for row in batch], type=schema.field(i).type) for i in range(len(columns))]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            batch.clear()

        for values in rows:
            for i in json_at:
                values[i] = orjson.dumps(values[i]).decode() if values[i] is not None else None
            batch.append(values)
            count += 1
            if len(batch) >= CHUNK:
                flush()
        if batch or count == 0:
            flush()
    return count
