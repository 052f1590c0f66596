"""The kinds of history file: their columns, aliases, and how one row becomes stored values.

A cleaner takes one row's cells (canonical column -> value as written: text from CSV, JSON
values from JSON Lines) and returns the values to store, or raises `RowErrors` naming every bad
column with a plain message. Cleaners do no I/O: customers and owners are looked up in indexes
the service builds once per file.
"""

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from customers.models import Subscription, SupportTicket

MAX_ACTION_COUNT = 10_000  # one `{type, count}` entry expands to at most this many actions
PAGE_EVENTS = frozenset({"page", "pageview", "page_view", "screen", "screen_view"})


class RowErrors(ValueError):
    """One row's problems: [(column or None, message)]."""

    def __init__(self, errors: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(message for _, message in errors))
        self.errors = errors


@dataclass
class Context:
    """What cleaners need besides the row: time zone, the import's "now", lookups."""

    tz: dt.tzinfo
    now: dt.datetime
    customer_ids: Callable[[str], int | None] = lambda ref: None
    user_ids: Mapping[str, int] = field(default_factory=dict)  # username and lower(e-mail) -> user id


@dataclass(frozen=True)
class Kind:
    name: str
    file_names: tuple[str, ...]  # file name stems that mean this kind
    columns: tuple[str, ...]  # canonical columns, in export order
    required: tuple[str, ...]
    aliases: Mapping[str, str]
    clean: Callable[[dict[str, Any], Context], dict[str, Any]]


# Columns we compute (or keep as bookkeeping) and never take from a file; accepted and ignored.
COMPUTED = frozenset(
    {
        "health_score",
        "churn_risk",
        "churn_probability",
        "risk_level",
        "risk",
        "created_at",
        "updated_at",
        "pk",
        "row_id",
    }
)


def normalise_header(name: str) -> str:
    """`churnRisk`, `Churn Risk`, ` churn-risk ` → `churn_risk`."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())
    return re.sub(r"[\s\-./]+", "_", name).lower().strip("_")


# --- values ----------------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, str) and value.isspace())


def text(value: Any) -> str:
    if _blank(value):
        return ""
    if isinstance(value, dict | list):
        raise _Bad("must be text, not a JSON structure")
    return str(value).strip()


def integer(value: Any, *, low: int | None = None, high: int | None = None) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _Bad("must be a whole number")
    try:
        number = Decimal(str(value).strip())
        if number != number.to_integral_value():
            raise _Bad("must be a whole number")
        result = int(number)
    except (InvalidOperation, ValueError):
        raise _Bad(f"{value!r} is not a whole number") from None
    if (low is not None and result < low) or (high is not None and result > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _Bad(f"{result} is out of range (must be {bounds})")
    return result


def money(value: Any, *, places: int = 2) -> Decimal | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _Bad("must be a number")
    try:
        number = Decimal(str(value).strip().replace(",", "") if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise _Bad(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise _Bad("must be a finite number")
    if number < 0:
        raise _Bad(f"{number} is negative")
    return number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def boolean(value: Any) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "t", "yes", "y", "1"):
        return True
    if word in ("false", "f", "no", "n", "0"):
        return False
    raise _Bad(f"{value!r} is not true or false")


def when(value: Any, tz: dt.tzinfo) -> dt.datetime | None:
    """ISO 8601 (`2024-03-01`, `2024-03-01T09:30:00`, `…Z`, `…+02:00`) as an aware UTC datetime.
    Naive times are in `tz`; a date alone is midnight there."""
    if _blank(value):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time())
    else:
        raw = str(value).strip()
        try:
            parsed = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise _Bad(f"{raw!r} is not an ISO 8601 date or time (e.g. 2024-03-01 or 2024-03-01T09:30:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(dt.UTC)


def json_value(value: Any, expected: type, noun: str) -> Any:
    if _blank(value):
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise _Bad(f"is not valid JSON (expected {noun})") from None
    if not isinstance(value, expected):
        raise _Bad(f"must be {noun}, not {type(value).__name__}")
    return value


_ACTION_NAME_KEYS = ("type", "action", "event", "name")


def actions(value: Any) -> list:
    """One canonical shape, whichever way the activity was encoded: a list with one entry per
    action, in the order given; an entry is the action's name, or `{"type": name, …}` when it
    carries more (a value, a time, other properties). `{"type": t, "count": n}` becomes n entries,
    so the stored list's length is always the number of actions (what features count)."""
    items = json_value(value, list, "a JSON list of actions")
    if items is None:
        return []
    result: list = []
    for index, item in enumerate(items):
        if isinstance(item, str) and item:
            result.append(item)
            continue
        if not isinstance(item, dict):
            raise _Bad(f"entry {index} must be an action name or an object with a type")
        names = [item[k] for k in _ACTION_NAME_KEYS if isinstance(item.get(k), str) and item[k]]
        if not names:
            raise _Bad(f"entry {index} has no type")
        count = item.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_ACTION_COUNT:
            raise _Bad(f"entry {index}: count must be a whole number from 0 to {MAX_ACTION_COUNT}")
        rest = {k: v for k, v in item.items() if k not in (*_ACTION_NAME_KEYS, "count") and v is not None}
        entry = {"type": names[0], **rest} if rest else names[0]
        result.extend([entry] * count)
    return result


# --- cleaners --------------------------------------------------------------------------------


class _Row:
    """Collects a row's errors so one pass reports every bad column."""

    def __init__(self, cells: dict[str, Any], ctx: Context) -> None:
        self.cells, self.ctx, self.errors = cells, ctx, []

    def get(self, column: str, parse: Callable[[Any], Any], *, required: bool = False) -> Any:
        raw = self.cells.get(column)
        if required and _blank(raw):
            self.errors.append((column, f"{column}: required."))
            return None
        try:
            return parse(raw)
        except _Bad as error:
            self.errors.append((column, f"{column}: {error}."))
            return None

    def time(self, column: str, *, required: bool = False, future_ok: bool = False) -> dt.datetime | None:
        raw = self.cells.get(column)
        if required and _blank(raw):
            self.errors.append((column, f"{column}: required."))
            return None
        try:
            value = when(raw, self.ctx.tz)
        except _Bad as error:
            self.errors.append((column, f"{column}: {error}."))
            return None
        if value is not None and not future_ok and value > self.ctx.now:
            self.errors.append((column, f"{column}: {value:%Y-%m-%d %H:%M:%S} UTC is in the future."))
        return value

    def customer(self) -> int | None:
        ref = self.get("customer", text, required=True)
        if not ref:
            return None
        customer_id = self.ctx.customer_ids(ref)
        if customer_id is None:
            self.errors.append(("customer", f"customer: no customer has the external id or e-mail {ref!r}."))
        return customer_id

    def after(self, early: str, late: str, start: dt.datetime | None, end: dt.datetime | None) -> None:
        if start is not None and end is not None and end < start:
            self.errors.append(
                (late, f"{late}: {end:%Y-%m-%d %H:%M:%S} is before {early} ({start:%Y-%m-%d %H:%M:%S}).")
            )

    def choice(self, column: str, choices: list[str], aliases: Mapping[str, str], default: str | None) -> str | None:
        raw = self.get(column, text)
        if not raw:
            if default is None:
                self.errors.append((column, f"{column}: required."))
            return default
        value = aliases.get(raw.lower().replace("-", "_").replace(" ", "_"), raw.lower().replace("-", "_"))
        if value not in choices:
            self.errors.append((column, f"{column}: {raw!r} is not one of {', '.join(choices)}."))
            return default
        return value

    def done(self, values: dict[str, Any]) -> dict[str, Any]:
        if self.errors:
            raise RowErrors(self.errors)
        return values


def clean_customer(cells: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Only the columns present are returned: a column absent from the file leaves the field as it
    is; a present but empty cell clears it (or sets its default)."""
    row = _Row(cells, ctx)
    values: dict[str, Any] = {}
    parsers: dict[str, Callable[[], Any]] = {
        "external_id": lambda: row.get("external_id", text) or None,
        "name": lambda: row.get("name", text),
        "company": lambda: row.get("company", text),
        "plan": lambda: row.get("plan", text),
        "mrr": lambda: row.get("mrr", money) or Decimal("0.00"),
        "signup_date": lambda: row.time("signup_date"),
        "last_login": lambda: row.time("last_login"),
        "nps_score": lambda: row.get("nps_score", lambda v: integer(v, low=0, high=10)),
        "support_tickets": lambda: row.get("support_tickets", lambda v: integer(v, low=0)) or 0,
        "feature_usage": lambda: row.get("feature_usage", lambda v: json_value(v, dict, "a JSON object")) or {},
        "is_active": lambda: row.get("is_active", boolean),
        "churned_at": lambda: row.time("churned_at"),
    }
    for column, parse in parsers.items():
        if column in cells:
            values[column] = parse()
    email = row.get("email", text)
    if email:
        try:
            validate_email(email)
            values["email"] = email
        except ValidationError:
            row.errors.append(("email", f"email: {email!r} is not an e-mail address."))
    elif "email" in cells:
        values["email"] = None
    if "owner" in cells:
        owner = row.get("owner", text)
        values["owner_id"] = None
        if owner:
            values["owner_id"] = ctx.user_ids.get(owner) or ctx.user_ids.get(owner.lower())
            if values["owner_id"] is None:
                row.errors.append(("owner", f"owner: no active user has the username or e-mail {owner!r}."))
    if not values.get("external_id") and not values.get("email"):
        row.errors.append(("external_id", "external_id or email: one of them is required to find the customer."))
    if "name" in values and not values["name"]:
        row.errors.append(("name", "name: required."))
    active, churned = values.get("is_active"), values.get("churned_at")
    if active is None and "is_active" in values:
        values["is_active"] = active = churned is None
    if active is True and churned is not None:
        row.errors.append(("churned_at", "churned_at: set, but is_active is true (a churned customer is inactive)."))
    if "is_active" not in values and "churned_at" in values:
        values["is_active"] = churned is None
    return row.done(values)


class _Unusual(Exception):
    """A cell the quick session cleaner leaves to the exact one."""


def _quick_time(raw: Any, ctx: Context) -> dt.datetime | None:
    if raw is None:
        return None
    if type(raw) is not str:
        raise _Unusual
    raw = raw.strip()
    if not raw:
        return None
    parsed = dt.datetime.fromisoformat(raw)  # ValueError: the exact cleaner words the error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ctx.tz)
    parsed = parsed.astimezone(dt.UTC)
    if parsed > ctx.now:
        raise _Unusual
    return parsed


def _quick_text(raw: Any) -> str | None:
    if raw is None:
        return None
    if type(raw) is not str:
        raise _Unusual
    return raw.strip() or None


def clean_session(cells: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """`_clean_session` for the common row (text cells, all valid) in a third of the calls: a
    session file is the bulk of a book. Anything else — a bad or blank required cell, a typed
    JSON Lines value, an action that is an object — is cleaned (and worded) by `_clean_session`."""
    try:
        started = _quick_time(cells.get("started_at"), ctx)
        ended = _quick_time(cells.get("ended_at"), ctx)
        if started is None or (ended is not None and ended < started):
            raise _Unusual
        ref = _quick_text(cells.get("customer"))
        customer_id = ctx.customer_ids(ref) if ref else None
        if customer_id is None:
            raise _Unusual
        pages = cells.get("pages_viewed")
        if type(pages) is str and pages.isascii() and pages.isdigit():
            pages = int(pages)
        elif _blank(pages):
            pages = 0
        else:
            raise _Unusual
        raw = cells.get("actions")
        if _blank(raw):
            entries: list = []
        elif type(raw) is str:
            entries = orjson.loads(raw)
            if type(entries) is not list or not all(type(e) is str and e for e in entries):
                raise _Unusual
        else:
            raise _Unusual
        return {
            "customer_id": customer_id,
            "started_at": started,
            "ended_at": ended,
            "pages_viewed": pages,
            "actions": entries,
            "external_id": _quick_text(cells.get("external_id")),
        }
    except (_Unusual, ValueError):  # orjson.JSONDecodeError is a ValueError
        return _clean_session(cells, ctx)


def _clean_session(cells: dict[str, Any], ctx: Context) -> dict[str, Any]:
    row = _Row(cells, ctx)
    started, ended = row.time("started_at", required=True), row.time("ended_at")
    row.after("started_at", "ended_at", started, ended)
    return row.done(
        {
            "customer_id": row.customer(),
            "started_at": started,
            "ended_at": ended,
            "pages_viewed": row.get("pages_viewed", lambda v: integer(v, low=0)) or 0,
            "actions": row.get("actions", actions) or [],
            "external_id": row.get("external_id", text) or None,
        }
    )


def clean_event(cells: dict[str, Any], ctx: Context) -> dict[str, Any]:
    row = _Row(cells, ctx)
    values = {
        "customer_id": row.customer(),
        "customer": row.get("customer", text),
        "occurred_at": row.time("occurred_at", required=True),
        "type": row.get("type", text, required=True),
        "value": cells.get("value") if not _blank(cells.get("value")) else None,
        "session_id": row.get("session_id", text) or None,
        "user_id": row.get("user_id", text) or None,
    }
    return row.done(values)


_TICKET_STATUS = {"new": "open", "resolved": "solved", "hold": "pending", "on_hold": "pending"}
_PRIORITY = {"medium": "normal", "critical": "urgent"}


def clean_ticket(cells: dict[str, Any], ctx: Context) -> dict[str, Any]:
    row = _Row(cells, ctx)
    opened, closed = row.time("opened_at", required=True), row.time("closed_at")
    row.after("opened_at", "closed_at", opened, closed)
    default_status = SupportTicket.Status.CLOSED if closed else SupportTicket.Status.OPEN
    return row.done(
        {
            "customer_id": row.customer(),
            "subject": row.get("subject", text) or "",
            "status": row.choice("status", SupportTicket.Status.values, _TICKET_STATUS, default_status),
            "priority": row.choice("priority", SupportTicket.Priority.values, _PRIORITY, "normal"),
            "opened_at": opened,
            "solved_at": closed,
            "external_id": row.get("external_id", text) or None,
        }
    )


def clean_nps(cells: dict[str, Any], ctx: Context) -> dict[str, Any]:
    row = _Row(cells, ctx)
    return row.done(
        {
            "customer_id": row.customer(),
            "score": row.get("score", lambda v: integer(v, low=0, high=10), required=True),
            "comment": row.get("comment", text) or "",
            "responded_at": row.time("responded_at", required=True),
            "external_id": row.get("external_id", text) or None,
        }
    )


_SUBSCRIPTION_STATUS = {
    "cancelled": "canceled",
    "churned": "canceled",
    "expired": "ended",
    "superseded": "ended",
    "renewed": "ended",
    "trial": "trialing",
    "pastdue": "past_due",
    "unpaid": "past_due",
}


def clean_subscription(cells: dict[str, Any], ctx: Context) -> dict[str, Any]:
    row = _Row(cells, ctx)
    start = row.time("start_date", required=True)
    # A period may be paid (or scheduled to end) beyond today.
    end = row.time("end_date", future_ok=True)
    row.after("start_date", "end_date", start, end)
    status = row.choice("status", Subscription.Status.values, _SUBSCRIPTION_STATUS, None)
    if status == Subscription.Status.CANCELED and end is None and "status" not in dict(row.errors):
        row.errors.append(("end_date", "end_date: required when status is canceled (the day the customer left)."))
    mrr = row.get("mrr", money, required=True)
    return row.done(
        {
            "customer_id": row.customer(),
            "external_id": row.get("external_id", text, required=True),
            "plan": row.get("plan", text) or "",
            "mrr": mrr,
            "started_at": start,
            "ended_at": end,
            "status": status,
            "bill_period_months": row.get("bill_period_months", lambda v: integer(v, low=1, high=120)),
            "discount": row.get("discount", lambda v: money(v, places=4)),
        }
    )


_ID = {"id": "external_id"}
_CUSTOMER = {
    "customer_id": "customer",
    "customer_external_id": "customer",
    "account_id": "customer",
    "account": "customer",
}

# The customers file's columns as model fields, in the file's order (its `owner` is `owner_id`).
CUSTOMER_FIELDS = (
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
)

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "customers",
            ("customers", "customer", "accounts"),
            tuple("owner" if name == "owner_id" else name for name in CUSTOMER_FIELDS),
            (),
            {
                **_ID,
                "customer_id": "external_id",
                "account_id": "external_id",
                "signed_up_at": "signup_date",
                "created": "signup_date",
                "active": "is_active",
                "churn_date": "churned_at",
                "churned": "churned_at",
                "owner_email": "owner",
                "csm": "owner",
                "nps": "nps_score",
                "open_tickets": "support_tickets",
            },
            clean_customer,
        ),
        Kind(
            "user_sessions",
            ("user_sessions", "sessions", "session"),
            ("external_id", "customer", "started_at", "ended_at", "pages_viewed", "actions"),
            ("customer", "started_at"),
            {
                **_ID,
                **_CUSTOMER,
                "session_id": "external_id",
                "start": "started_at",
                "started": "started_at",
                "end": "ended_at",
                "ended": "ended_at",
                "pages": "pages_viewed",
                "page_views": "pages_viewed",
            },
            clean_session,
        ),
        Kind(
            "events",
            ("events", "event", "product_events", "tracks"),
            ("customer", "occurred_at", "type", "value", "session_id", "user_id"),
            ("customer", "occurred_at", "type"),
            {**_CUSTOMER, "timestamp": "occurred_at", "at": "occurred_at", "time": "occurred_at", "event": "type"},
            clean_event,
        ),
        Kind(
            "support_tickets",
            ("support_tickets", "tickets", "ticket"),
            ("external_id", "customer", "opened_at", "closed_at", "priority", "status", "subject"),
            ("customer", "opened_at"),
            {
                **_ID,
                **_CUSTOMER,
                "ticket_id": "external_id",
                "created_at": "opened_at",
                "opened": "opened_at",
                "solved_at": "closed_at",
                "resolved_at": "closed_at",
                "closed": "closed_at",
                "title": "subject",
            },
            clean_ticket,
        ),
        Kind(
            "nps_responses",
            ("nps_responses", "nps", "nps_answers", "surveys"),
            ("external_id", "customer", "responded_at", "score", "comment"),
            ("customer", "responded_at", "score"),
            {
                **_ID,
                **_CUSTOMER,
                "response_id": "external_id",
                "created_at": "responded_at",
                "submitted_at": "responded_at",
                "answered_at": "responded_at",
                "nps": "score",
                "nps_score": "score",
                "rating": "score",
                "feedback": "comment",
            },
            clean_nps,
        ),
        Kind(
            "subscriptions",
            ("subscriptions", "subscription", "subscription_history"),
            (
                "external_id",
                "customer",
                "plan",
                "mrr",
                "start_date",
                "end_date",
                "status",
                "bill_period_months",
                "discount",
            ),
            ("external_id", "customer", "mrr", "start_date", "status"),
            {
                **_ID,
                **_CUSTOMER,
                "subscription_id": "external_id",
                "started_at": "start_date",
                "start": "start_date",
                "current_period_start": "start_date",
                "ended_at": "end_date",
                "end": "end_date",
                "canceled_at": "end_date",
                "cancelled_at": "end_date",
                "amount": "mrr",
                "plan_name": "plan",
            },
            clean_subscription,
        ),
    )
}
# Import order: customers before the facts that name them, subscriptions before sessions so a
# customers file's churn dates can be checked against them in the same run.
ORDER = ("customers", "subscriptions", "user_sessions", "events", "support_tickets", "nps_responses")


def kind_of_file(stem: str) -> str | None:
    """The kind a file name means: `tickets.csv.gz`, `2024_support_tickets.jsonl` → support_tickets."""
    name = normalise_header(stem)
    for kind in KINDS.values():
        if name in kind.file_names:
            return kind.name
    for kind in KINDS.values():
        if any(name.endswith("_" + n) or name.startswith(n + "_") for n in kind.file_names):
            return kind.name
    return None


def map_header(
    kind: Kind, header: list[str], mapping: Mapping[str, str | None]
) -> tuple[dict[str, str], list[str], list[str]]:
    """(written name -> canonical column, ignored names, unknown names). `mapping` (written name
    -> canonical column, or None to ignore) comes first, then the kind's names and aliases."""
    columns: dict[str, str] = {}
    ignored, unknown = [], []
    for written in header:
        if written in mapping:
            target = mapping[written]
            if target is None:
                ignored.append(written)
            else:
                columns[written] = target
            continue
        name = normalise_header(written)
        name = kind.aliases.get(name, name) if name not in kind.columns else name
        if name in kind.columns:
            columns[written] = name
        elif name in COMPUTED or not name:
            ignored.append(written)
        else:
            unknown.append(written)
    return columns, ignored, unknown


def guess_kind(header: list[str]) -> str | None:
    """The kind whose required columns this header has (for "wrong kind of file" messages)."""
    for kind in KINDS.values():
        columns, _, _ = map_header(kind, header, {})
        if kind.required and set(kind.required) <= set(columns.values()):
            return kind.name
    return None


__all__ = ["KINDS", "ORDER", "Context", "Kind", "RowErrors", "ZoneInfo", "kind_of_file", "map_header"]
