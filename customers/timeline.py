"""A customer's activity timeline, merged newest-first from every app that knows something.

Apps register a source in their `AppConfig.ready()`, so `customers` never imports the apps built
on top of it. A source takes `(customer_id, cursor, limit)` and returns at most `limit` events
strictly after `cursor` in newest-first order (use `before_cursor()` to filter), each
`{"type", "at" (aware datetime), "title", "detail", "ref": {"kind", "id"}}`; a type is a lowercase
name (`[a-z_]`, it is part of the cursor).

The cursor is the `(at, type, id)` of the last event shown, so events that share a timestamp are
neither skipped nor repeated across pages. On the wire it is `<microseconds since the epoch>~<type>~<id>`
(CURSOR_PATTERN): every text that matches the documented pattern is a position the API can page
from, so the schema says exactly which cursors are valid.
"""

import re
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

Cursor = tuple[datetime, str, int]
# At most 16 digits of microseconds (before 1653 to after 2286), inside what a datetime can hold.
CURSOR_PATTERN = r"^-?[0-9]{1,16}~[a-z_]{1,40}~[0-9]{1,18}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
TimelineSource = Callable[[int, Cursor | None, int], list[dict[str, Any]]]
_sources: list[TimelineSource] = []


def register_timeline_source(source: TimelineSource) -> TimelineSource:
    if source not in _sources:
        _sources.append(source)
    return source


def before_cursor(field: str, event_type: str, cursor: Cursor | None) -> Q:
    """Rows of one event type that sort after `cursor` in (at, type, id) descending order."""
    if cursor is None:
        return Q()
    at, cursor_type, cursor_id = cursor
    earlier = Q(**{f"{field}__lt": at})
    if event_type < cursor_type:
        return earlier | Q(**{field: at})
    if event_type == cursor_type:
        return earlier | Q(**{field: at, "id__lt": cursor_id})
    return earlier


def events_after(
    rows: QuerySet, *, event_type: str, field: str, cursor: Cursor | None, limit: int, render: Callable[[Any], dict]
) -> list[dict]:
    """A source's page: `rows` after `cursor`, newest first, each rendered to title/detail/ref."""
    page = rows.filter(before_cursor(field, event_type, cursor)).order_by(f"-{field}", "-id")[:limit]
    return [{"type": event_type, "at": getattr(row, field), **render(row)} for row in page]


def cursor_encode(cursor: Cursor) -> str:
    at, event_type, event_id = cursor
    return f"{(at - _EPOCH) // _MICROSECOND}~{event_type}~{event_id}"


def cursor_decode(text: str) -> Cursor:
    """The cursor `cursor_encode` wrote; ValueError for a text outside CURSOR_PATTERN."""
    if not re.fullmatch(CURSOR_PATTERN, text):
        raise ValueError(f"not a timeline cursor: {text!r}")
    micros, event_type, event_id = text.split("~")
    return _EPOCH + int(micros) * _MICROSECOND, event_type, int(event_id)


def _key(event: dict) -> Cursor:
    return (event["at"], event["type"], event["ref"]["id"])


def customer_timeline(
    *, customer_id: int, cursor: Cursor | None, limit: int, types: Collection[str] | None = None
) -> tuple[list[dict], Cursor | None]:
    """One page of the merged timeline and the cursor of the next page (None at the end).

    `types` keeps only those event types (every source still answers `limit + 1` per type, so the
    page is as full as without the filter)."""
    events: list[dict] = []
    for source in _sources:
        events.extend(source(customer_id, cursor, limit + 1))
    if types is not None:
        events = [event for event in events if event["type"] in types]
    events.sort(key=_key, reverse=True)
    page = events[:limit]
    return page, (_key(page[-1]) if len(events) > limit else None)


# Sections that other apps add to the customer detail (`latestPrediction`, `openInterventions`):
# each takes the customer id and returns a JSON-ready value.
DetailSection = Callable[[int], Any]
_detail_sections: dict[str, DetailSection] = {}


def register_detail_section(name: str, section: DetailSection) -> None:
    _detail_sections[name] = section


def customer_detail_sections(customer_id: int) -> dict[str, Any]:
    return {name: section(customer_id) for name, section in _detail_sections.items()}
