"""The canonical events connectors produce, as `customers` defines them (it applies them)."""

from customers.history.canonical import (
    LIVE_SUBSCRIPTION_STATES,
    ActivitySeen,
    CanonicalEvent,
    CustomerRef,
    CustomerUpserted,
    NpsReceived,
    OwnerSeen,
    PaymentRecorded,
    SubscriptionChanged,
    TicketChanged,
    UserLinked,
)

__all__ = [
    "LIVE_SUBSCRIPTION_STATES",
    "ActivitySeen",
    "CanonicalEvent",
    "CustomerRef",
    "CustomerUpserted",
    "NpsReceived",
    "OwnerSeen",
    "PaymentRecorded",
    "SubscriptionChanged",
    "TicketChanged",
    "UserLinked",
]
