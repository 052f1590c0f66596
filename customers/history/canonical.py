"""Canonical events: the facts about customers that an outside source reports.

Connectors (`integrations.connectors`) translate a provider's objects into these;
`customers.history.apply.canonical_events_apply` is the one place that writes them to the
customers' tables. Each event names the outside object
(`external_id`, unique per integration and kind) and its `version` (the provider's modification
time): an event not newer than what is stored is ignored, so delivery order does not matter.
"""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class CustomerRef:
    """How a fact finds its customer: the provider's id for the account, a user id, or an e-mail."""

    external_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    ticket_external_id: str | None = None  # a satisfaction rating belongs to its ticket's customer


@dataclass
class CustomerUpserted:
    """An account was created or changed. Fields left None are not provided by this source.

    `kind` separates objects of one provider that describe the same account (a HubSpot company
    and its contacts). A source without an e-mail (a company) waits, stored, until one arrives
    (`account_external_id` of a contact names the account it belongs to).
    """

    external_id: str
    version: dt.datetime
    kind: str = "customer"
    email: str | None = None
    name: str | None = None
    company: str | None = None
    plan: str | None = None
    owner_email: str | None = None
    owner_external_id: str | None = None
    signup_date: dt.datetime | None = None
    account_external_id: str | None = None


@dataclass
class OwnerSeen:
    """A CRM user who owns accounts; matched to our users by e-mail."""

    external_id: str
    email: str
    version: dt.datetime


@dataclass
class UserLinked:
    """A product user (Segment userId) belongs to an account."""

    user_id: str
    customer: CustomerRef
    version: dt.datetime


@dataclass
class ActivitySeen:
    """One product event (a page view or an action) inside a session; additive, so deduped upstream."""

    session_id: str
    customer: CustomerRef
    at: dt.datetime
    page: bool = False
    action: str | None = None


@dataclass
class TicketChanged:
    external_id: str
    customer: CustomerRef
    version: dt.datetime
    subject: str
    status: str  # open, pending, solved, closed
    priority: str = "normal"
    opened_at: dt.datetime | None = None
    solved_at: dt.datetime | None = None


@dataclass
class NpsReceived:
    external_id: str
    customer: CustomerRef
    version: dt.datetime
    score: int
    responded_at: dt.datetime
    comment: str = ""


@dataclass
class PaymentRecorded:
    """An invoice paid or failed; a later version of the same invoice replaces the earlier."""

    external_id: str
    customer: CustomerRef
    version: dt.datetime
    succeeded: bool
    amount: Decimal
    occurred_at: dt.datetime


@dataclass
class SubscriptionChanged:
    """A subscription's current state; the customer's MRR, plan and churn follow from all of them."""

    external_id: str
    customer: CustomerRef
    version: dt.datetime
    status: str  # active, trialing, past_due, canceled, …
    mrr: Decimal
    plan: str = ""
    cancelled_at: dt.datetime | None = None
    extra: dict = field(default_factory=dict)
    # The current billing period, when the source says (the customer's renewal date follows from it).
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    bill_period_months: int | None = None


CanonicalEvent = (
    CustomerUpserted
    | OwnerSeen
    | UserLinked
    | ActivitySeen
    | TicketChanged
    | NpsReceived
    | PaymentRecorded
    | SubscriptionChanged
)

# Subscription states that still pay (Stripe's names; other providers map onto them).
LIVE_SUBSCRIPTION_STATES = {"active", "trialing", "past_due", "unpaid"}
