"""Hook points other apps plug into (registered in their `AppConfig.ready()`), so `integrations`
never imports the apps above it.

**Payment failed** (for playbooks): after a transaction that applied a failed payment
commits — a new failed invoice, or one that was paid and now failed — every registered handler is
called once with a `PaymentFailed`. Register with::

    from integrations.hooks import register_payment_failed_handler
    register_payment_failed_handler(my_handler)   # my_handler(event: PaymentFailed) -> None

Handlers run after commit in the worker that applied the event; a handler that raises is logged
and does not undo the payment (enqueue your own task for anything slow or fallible).
"""

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaymentFailed:
    customer_id: int
    billing_event_id: int
    amount: Decimal
    occurred_at: dt.datetime
    integration_id: int


PaymentFailedHandler = Callable[[PaymentFailed], None]
_payment_failed_handlers: list[PaymentFailedHandler] = []


def register_payment_failed_handler(handler: PaymentFailedHandler) -> PaymentFailedHandler:
    if handler not in _payment_failed_handlers:
        _payment_failed_handlers.append(handler)
    return handler


def unregister_payment_failed_handler(handler: PaymentFailedHandler) -> None:
    if handler in _payment_failed_handlers:
        _payment_failed_handlers.remove(handler)


def payment_failed_applied(event: PaymentFailed) -> None:
    for handler in list(_payment_failed_handlers):
        try:
            handler(event)
        except Exception:
            logger.exception("payment-failed handler %r raised for customer %s", handler, event.customer_id)
