"""Domain events: the one way an app tells the apps above it that something happened.

An app lower in the dependency order (customers, integrations, predictions) cannot call the apps
that build on it (playbooks) without importing them. It publishes an event instead; the upper app
subscribes in its `AppConfig.ready()`. There is no other mechanism: no Django signals between
apps, no `post_save` listeners, no per-app hook lists.

    from core import events
    events.subscribe(events.PaymentFailed, my_handler)    # my_handler(event) -> None
    events.publish_on_commit(events.PaymentFailed(...))

Handlers run once the publishing transaction commits (at once when none is open), in the process
that published, in subscription order. A handler that raises is logged and does not undo what was
committed or stop the other handlers, so keep handlers short: enqueue a task for anything slow or
fallible.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustomersScored:
    """A scoring run committed new predictions: for these customers, or the whole book (None)."""

    run_id: int | None
    customer_ids: list[int] | None


@dataclass(frozen=True)
class PaymentFailed:
    """A payment newly failed: a new failed invoice, or one that was paid and now failed."""

    customer_id: int
    billing_event_id: int
    amount: Decimal
    occurred_at: dt.datetime
    integration_id: int | None = None


Handler = Callable[[Any], None]
_handlers: defaultdict[type, list[Handler]] = defaultdict(list)


def subscribe(event_type: type, handler: Handler) -> Handler:
    """Call `handler(event)` after every committed `event_type`; subscribing twice is a no-op."""
    if handler not in _handlers[event_type]:
        _handlers[event_type].append(handler)
    return handler


def unsubscribe(event_type: type, handler: Handler) -> None:
    if handler in _handlers[event_type]:
        _handlers[event_type].remove(handler)


def publish_on_commit(event: object) -> None:
    """Deliver `event` to its subscribers after the current transaction commits."""
    transaction.on_commit(lambda: _deliver(event))


def _deliver(event: object) -> None:
    for handler in list(_handlers[type(event)]):
        try:
            handler(event)
        except Exception:
            logger.exception("%s handler %r raised", type(event).__name__, handler)
