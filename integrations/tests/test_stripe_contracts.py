"""A Stripe subscription's billing periods become subscription versions, and the customer's
contract (renewal date, ARR) follows them, through the real webhook path (the receiver over ASGI,
which commits on its own threads: a transactional test)."""

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import ContractSource, Customer, Subscription
from integrations import services
from integrations.tests.fakes import stripe_customer, stripe_event, stripe_subscription
from integrations.tests.test_webhooks import send_stripe

DAY = 86_400
pytestmark = pytest.mark.django_db(transaction=True)


def _period(subscription: dict, start: int, end: int) -> dict:
    # API versions since 2025-03-31 carry the period on the items only.
    for item in subscription["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = start, end
    return subscription


def test_periods_become_versions_and_the_contract_follows_them(make_integration):
    integration = make_integration("stripe")
    t = int(time.time()) - 200
    first_start, first_end = t - 20 * DAY, t + 10 * DAY
    renewed_end = t + 2 + 365 * DAY
    events = [
        stripe_event("evt_c", "customer.created", stripe_customer(1, "one@example.com"), t),
        stripe_event(
            "evt_1",
            "customer.subscription.created",
            _period(stripe_subscription(1, "cus_1", cents=50_000), first_start, first_end),
            t + 1,
        ),
    ]
    for event in events:
        send_stripe(integration, event)
    services.webhooks_drain(integration_id=integration.pk)
    customer = Customer.objects.get(email="one@example.com")
    assert (customer.renewal_date, customer.contract_value, customer.bill_period_months, customer.contract_source) == (
        timezone.localdate(dt.datetime.fromtimestamp(first_end, tz=dt.UTC)),
        Decimal("6000.00"),
        1,
        ContractSource.SUBSCRIPTIONS,
    )

    # An upgrade to a yearly price that restarts the billing period (billing_cycle_anchor=now).
    renewal = _period(stripe_subscription(1, "cus_1", cents=1_200_000, interval="year"), t + 2, renewed_end)
    send_stripe(integration, stripe_event("evt_2", "customer.subscription.updated", renewal, t + 2))
    services.webhooks_drain(integration_id=integration.pk)
    versions = list(
        Subscription.objects.filter(customer=customer).order_by("started_at").values_list("mrr", "status", "ended_at")
    )
    at = lambda epoch: dt.datetime.fromtimestamp(epoch, tz=dt.UTC)  # noqa: E731
    assert versions == [
        (Decimal("500.00"), "ended", at(t + 2)),
        (Decimal("1000.00"), "active", at(renewed_end)),
    ]
    customer.refresh_from_db()
    assert (customer.renewal_date, customer.contract_value, customer.bill_period_months) == (
        timezone.localdate(at(renewed_end)),
        Decimal("12000.00"),
        12,
    )

    # Cancelled: the version ends there, no contract is left.
    cancelled = stripe_subscription(1, "cus_1", status="canceled", cents=1_200_000, interval="year", ended_at=t + 3)
    send_stripe(integration, stripe_event("evt_3", "customer.subscription.deleted", cancelled, t + 3))
    services.webhooks_drain(integration_id=integration.pk)
    customer.refresh_from_db()
    assert (customer.renewal_date, customer.contract_value) == (None, Decimal("0.00"))
    assert Subscription.objects.filter(customer=customer, status="canceled").values_list(
        "ended_at", flat=True
    ).get() == at(t + 3)
