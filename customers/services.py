"""Writes to customers. Every write is keyword-only, typed and atomic."""

import csv
import datetime as dt
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from core import events
from core.auth.roles import sees_all_customers
from core.exceptions import ConflictError
from customers.history.apply import CustomerRow, customers_match, customers_upsert
from customers.import_schema import CustomerImportRowSerializer
from customers.models import BillingEvent, Customer, RenewalCount, UserSession
from customers.renewals import renewal_counts_compute

MAX_IMPORT_ROWS = 10_000
MAX_IMPORT_COLUMNS = 200
MAX_IMPORT_CHARS = 5 * 1024 * 1024
# Attempts at writing an import whose new e-mails another writer committed first (each retry
# sees them and updates them instead).
IMPORT_ATTEMPTS = 5
RETRYABLE = {"40P01", "40001"}  # PostgreSQL's deadlock detected, serialization failure
# The request body is already capped at MAX_IMPORT_CHARS, so the csv module's per-cell cap
# (131,072 characters, a guard for files of unbounded size) could only turn one long cell into an
# error that names no row or column; past it, the row serializer's max_length names the cell.
csv.field_size_limit(MAX_IMPORT_CHARS)
# Columns a CSV may set. Any other column (health score and churn risk are ours to compute, ids,
# the app's own export columns) is ignored, never written.
IMPORT_FIELDS = (
    "name",
    "email",
    "company",
    "plan",
    "mrr",
    "signup_date",
    "last_login",
    "nps_score",
    "support_tickets",
    "is_active",
    "owner",
)
# One answer whether the e-mail is free or belongs to another portfolio, so an import cannot tell
# a CSM which e-mails other CSMs' customers have.
NOT_IN_PORTFOLIO = "email: no customer with this e-mail in your portfolio (a manager adds new customers)."
UNCLOSED_QUOTE = 'a quoted value is never closed (missing ").'


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.errors

    def error(self, row: int, column: str | None, message: str) -> None:
        self.errors.append({"row": row, "field": column, "message": message})


@dataclass
class _Row:
    number: int
    values: dict[str, Any]  # validated, defaults filled in
    carried: set[str]  # the columns with a value in this row: all an update may change

    @property
    def email_key(self) -> str:
        return self.values["email"].lower()


class _Lines:
    """The text's lines, split at \\r\\n, \\n or a bare \\r and kept whole (what the csv module
    expects from a file opened with newline=""), noting when the reader asks past the last one.

    Reading never asks past the last line within a record unless a quoted value is still open at
    the end of the text: the lenient reader then hands back everything after the quote as one cell.
    """

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.exhausted = False

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            self.exhausted = True
            raise


class _UnreadableRecord(Exception):
    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row = row


def _records(text: str) -> Iterator[tuple[int, list[str], bool]]:
    """Each record's number (the header is 1), cells, and whether a quoted value in its last cell
    is never closed."""
    lines = _Lines(text.removeprefix("\ufeff"))  # Excel's "CSV UTF-8" starts with a byte order mark
    reader = csv.reader(lines)
    for number in itertools.count(1):
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # not expected with the reading above; a 400 all the same
            raise _UnreadableRecord(number, str(exc)) from exc
        yield number, cells, lines.exhausted


# Header cells name a field in any spelling: snake_case, camelCase, "Signup Date", "NPS score".
_FIELD_BY_KEY = {name.replace("_", ""): name for name in IMPORT_FIELDS}


def _field_for(header: str) -> str | None:
    return _FIELD_BY_KEY.get(re.sub(r"[^a-z0-9]", "", header.lower()))


def _parse(text: str, result: ImportResult) -> list[_Row]:
    """Validated rows, or errors in `result` naming the row (the header is row 1) and column."""
    records = _records(text)
    try:
        _, header, unclosed = next(records, (1, [], False))
        if not any(cell.strip() for cell in header):
            result.error(0, None, "The CSV has no header row.")
            return []
        if unclosed:
            # The cell runs to the end of the text; its first line is the column's name.
            column = header[-1].splitlines()[0].strip() if header[-1].strip() else ""
            result.error(1, column or None, f"{column}: {UNCLOSED_QUOTE}" if column else UNCLOSED_QUOTE)
            return []
        if len(header) > MAX_IMPORT_COLUMNS:
            result.error(1, None, f"At most {MAX_IMPORT_COLUMNS} columns per import.")
            return []
        columns: dict[int, str] = {}  # cell position → field it sets
        for position, original in enumerate(header):
            name = _field_for(original)
            if name is None:
                if original.strip() and original not in result.ignored_columns:
                    result.ignored_columns.append(original)
            elif name in columns.values():
                result.error(1, original, f"Duplicate column: {original}.")
            else:
                columns[position] = name
        missing = [column for column in ("name", "email") if column not in columns.values()]
        if missing:
            result.error(1, missing[0], f"Missing required column(s): {', '.join(missing)}.")
        if result.errors:
            return []
        return _parse_rows(records, header, columns, result)
    except _UnreadableRecord as exc:
        result.error(exc.row, None, f"Unreadable CSV: {exc}.")
        return []


def _parse_rows(
    records: Iterator[tuple[int, list[str], bool]], header: list[str], columns: dict[int, str], result: ImportResult
) -> list[_Row]:
    rows: list[_Row] = []
    seen_emails: dict[str, int] = {}
    for number, cells, unclosed in records:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or only separators
        if len(rows) >= MAX_IMPORT_ROWS:
            result.error(number, None, f"At most {MAX_IMPORT_ROWS} rows per import.")
            break
        if unclosed:
            column = header[len(cells) - 1] if len(cells) <= len(header) else None
            result.error(number, column, f"{column}: {UNCLOSED_QUOTE}" if column else UNCLOSED_QUOTE)
            break
        if any(cell.strip() for cell in cells[len(header) :]):
            result.error(number, None, f"Row has {len(cells)} cells; the header has {len(header)}.")
            continue
        data = {name: cells[position] for position, name in columns.items() if position < len(cells)}
        data = {name: value for name, value in data.items() if value.strip() != ""}
        serializer = CustomerImportRowSerializer(data=data)
        if not serializer.is_valid():
            for name, messages in serializer.errors.items():
                result.error(number, name, f"{name}: {messages[0]}")
            continue
        row = _Row(number=number, values=dict(serializer.validated_data), carried=set(data))
        if row.email_key in seen_emails:
            result.error(number, "email", f"email: duplicate of row {seen_emails[row.email_key]}.")
            continue
        seen_emails[row.email_key] = number
        rows.append(row)
    return rows


def customer_import_csv(*, user: Any, text: str) -> ImportResult:
    """Validate every row, then create or update (matched by e-mail) all of them, or none.

    An update changes only the columns the file carries, and a blank cell leaves its column alone;
    a new customer gets the defaults for the rest. Columns we do not import are ignored and listed.
    A CSM updates their own portfolio only: a row whose e-mail is not theirs gets one answer
    whether the e-mail is free or another CSM's. Managers and admins create, update anywhere and
    may name an `owner`.
    """
    result = ImportResult()
    rows = _parse(text, result)
    if result.errors:
        return result
    for _attempt in range(IMPORT_ATTEMPTS):
        try:
            with transaction.atomic():
                return _write(user=user, rows=rows, result=result)
        except (IntegrityError, OperationalError) as exc:
            # A concurrent writer committed one of our new e-mails first (unique violation), or
            # two writers waited on each other (deadlock): the next attempt sees what they wrote.
            if isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) not in RETRYABLE:
                raise
    raise ConflictError("Other imports kept writing the same customers; nothing was imported. Try again.")


def _write(*, user: Any, rows: list[_Row], result: ImportResult) -> ImportResult:
    manage_all = sees_all_customers(user)
    owners = {
        u.username: u
        for u in get_user_model().objects.filter(username__in={row.values["owner"] for row in rows} - {""})
    }
    matches = [CustomerRow(email=row.values["email"]) for row in rows]
    # Locked in id order, so that concurrent imports of the same customers queue instead of
    # overwriting each other's columns with what they read before.
    customers_match(rows=matches, lock=True)
    now = timezone.now()
    for row, match in zip(rows, matches, strict=True):
        values = dict(row.values)
        owner_name = values.pop("owner")
        owner = user
        if owner_name:
            if not manage_all and owner_name != user.get_username():
                result.error(row.number, "owner", "owner: you may only import into your own portfolio.")
                continue
            owner = owners.get(owner_name)
            if owner is None:
                result.error(row.number, "owner", f"owner: unknown user {owner_name!r}.")
                continue
        if not manage_all and (match.customer is None or match.customer.owner_id != user.pk):
            result.error(row.number, "email", NOT_IN_PORTFOLIO)
            continue
        if match.customer is None:
            match.new = {**values, "owner": owner, "signup_date": values["signup_date"] or now}
            continue
        # The e-mail is the key the row matched by, not a value to rewrite in another case.
        match.values = {name: values[name] for name in row.carried - {"email", "owner"}}
        if owner_name:
            match.values["owner_id"] = owner.pk
    if result.errors:
        return result
    upserted = customers_upsert(rows=matches, now=now)
    # Every row that matched a customer counts as updated, whether or not it changed a value.
    result.created, result.updated = len(upserted.created), len(upserted.updated) + len(upserted.unchanged)
    return result


COPY_THRESHOLD = 500  # below this, four statements of temp-table setup cost more than they save


@transaction.atomic
def customer_scores_set(*, scores: list[tuple[int, Decimal, int]]) -> int:
    """Write (customer id, churn risk, health score) for many customers at once; returns how many
    rows the database changed (PostgreSQL skips rows whose scores are unchanged).

    PostgreSQL: COPY into a temporary table, then one UPDATE … FROM (about 50× faster than
    `bulk_update`'s CASE expressions at 100,000 rows). Elsewhere: `bulk_update`.
    """
    if not scores:
        return 0
    if connection.vendor == "postgresql" and len(scores) > COPY_THRESHOLD:
        with connection.cursor() as cursor:
            # Dropped at commit; truncated first in case an enclosing transaction already made it.
            cursor.execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS customer_scores_in"
                " (id integer, churn_risk numeric(5, 4), health_score integer) ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE customer_scores_in")
            with cursor.cursor.copy(
                "COPY customer_scores_in (id, churn_risk, health_score) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int4", "numeric", "int4"])
                for row in scores:
                    copy.write_row(row)
            cursor.execute(
                "UPDATE customers SET churn_risk = s.churn_risk, health_score = s.health_score, updated_at = now()"
                " FROM customer_scores_in s WHERE customers.id = s.id"
                # An unchanged score rewrites nothing (no new row version, no index churn).
                " AND (customers.churn_risk, customers.health_score) IS DISTINCT FROM (s.churn_risk, s.health_score)"
            )
            return cursor.rowcount
    rows = [
        Customer(pk=pk, churn_risk=risk, health_score=health, updated_at=timezone.now()) for pk, risk, health in scores
    ]
    Customer.objects.bulk_update(rows, ["churn_risk", "health_score", "updated_at"], batch_size=1000)
    return len(rows)


@transaction.atomic
def billing_event_record(*, event: BillingEvent) -> BillingEvent:
    """Store a billing event entered by hand (the admin, a shell). A failed payment is published
    after commit, as the data sync publishes the ones it applies, so playbooks act on it at once."""
    event.save()
    if event.kind == BillingEvent.Kind.PAYMENT_FAILED:
        events.publish_on_commit(
            events.PaymentFailed(
                customer_id=event.customer_id,
                billing_event_id=event.pk,
                amount=event.amount,
                occurred_at=event.occurred_at,
            )
        )
    return event


def _action_name(action: object) -> object:
    if isinstance(action, dict):
        for key in ("type", "name", "action", "event"):
            if isinstance(action.get(key), str):
                return action[key]
        return "action"
    return action


def session_actions_compact(cutoff: dt.datetime) -> int:
    """Retention job: old sessions keep only the names of their actions, not the raw payloads.

    The list keeps its length, so the features built from it (action counts) do not change.
    """
    old = UserSession.objects.filter(started_at__lt=cutoff).order_by()
    if connection.vendor == "postgresql":
        # Only rows that still hold an object somewhere in the list (the daily run skips the rest).
        old = old.extra(where=["jsonb_path_exists(actions, '$[*] ? (@.type() == \"object\")')"])
    # Keyset batches rather than `.iterator()`: its server-side cursor outlives a transaction,
    # which a transaction-mode pooler cannot carry, and each batch commits before the next read.
    changed, last_pk = 0, 0
    while sessions := list(old.filter(pk__gt=last_pk).order_by("pk").only("pk", "actions")[:5000]):
        last_pk = sessions[-1].pk
        batch = []
        for session in sessions:
            compacted = [_action_name(action) for action in session.actions or []]
            if compacted != session.actions:
                session.actions = compacted
                batch.append(session)
        if batch:
            with transaction.atomic():
                UserSession.objects.bulk_update(batch, ["actions"], batch_size=1000)
        changed += len(batch)
    return changed


def customer_fields_set(*, customer: Customer, values: dict[str, Any]) -> Customer:
    """Set some of a customer's fields (model field names; `owner` a user) and save only those."""
    for name, value in values.items():
        setattr(customer, name, value)
    customer.save(update_fields=[*values, "updated_at"])
    return customer


@transaction.atomic
def renewal_count_take(*, months: int = 12, now: dt.datetime | None = None) -> int:
    """Replace the stored renewal count (`renewal_counts`) with one counted now; returns its rows,
    one per owner. The daily run calls it after scoring, so the forecast uses the day's
    probabilities."""
    counts = renewal_counts_compute(months=months, now=now)
    RenewalCount.objects.all().delete()
    RenewalCount.objects.bulk_create(counts)
    return len(counts)
