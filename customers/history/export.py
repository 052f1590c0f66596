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

from django.contrib.auth import get_user_model
from django.db.models import Model

from customers.history.kinds import KINDS
from customers.history.readers import writer_for
from customers.models import Customer, NpsResponse, Subscription, SupportTicket, UserSession

CHUNK = 5000


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
    _Table(
        "customers",
        Customer,
        (
            "external_id",
            "name",
            "email",
            "company",
            "plan",
            "mrr",
            "signup_date",
            "last_login",
            "nps_score",
            "support_tickets",
            "feature_usage",
            "is_active",
            "churned_at",
            "owner_id",
        ),
    ),
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


def _rows(table: _Table, refs: dict[int, str], owners: dict[int, str]) -> Iterator[list[Any]]:
    rows = table.model.objects.order_by("pk").values_list(*table.fields).iterator(chunk_size=CHUNK)
    customer_at = table.fields.index("customer_id") if "customer_id" in table.fields else None
    owner_at = table.fields.index("owner_id") if "owner_id" in table.fields else None
    for row in rows:
        values = [_text(v) for v in row]
        if customer_at is not None:
            values[customer_at] = refs[row[customer_at]]
        if owner_at is not None:
            values[owner_at] = owners.get(row[owner_at]) if row[owner_at] else None
        yield values


def export_history(
    *, directory: Path, fmt: str = "csv", progress: Callable[[str, int], Any] | None = None
) -> dict[str, int]:
    """Write one file per kind into `directory`; returns the rows written per kind."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError("fmt must be csv or jsonl (Parquet export needs pyarrow, not installed).")
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
        with open(path, "w", encoding="utf-8", newline="") as stream:
            write = writer_for(fmt, stream, columns)
            for values in _rows(table, refs, owners):
                write(values)
                count += 1
        written[table.kind] = count
        if progress is not None:
            progress(table.kind, count)
    return written
