"""Stripe: customers, subscriptions (MRR, plan, cancellation → churn) and invoices (payments).

Push: `Stripe-Signature` verified by the official library (`stripe.WebhookSignature`), plus a
check it does not make: a timestamp in the future beyond the tolerance is rejected too.
Pull: the first run lists customers and subscriptions (current state, versioned at fetch time),
later runs read `/v1/events` since the cursor — the same event objects the webhooks carry, so
both halves share `transform`.
"""

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import stripe
from django.utils import timezone

from customers.history.canonical import (
    CanonicalEvent,
    CustomerRef,
    CustomerUpserted,
    PaymentRecorded,
    SubscriptionChanged,
)
from integrations.connectors.base import (
    SYNC_INTERVAL,
    Connector,
    Delivery,
    IncomingEvent,
    Page,
    Setting,
    SignatureError,
    api_base_setting,
    check_epoch_tolerance,
    loads,
    parse_time,
    secret_value,
)
from integrations.connectors.http import ApiClient
from integrations.models import Integration

PER_MONTH = {"day": Decimal(365) / 12, "week": Decimal(52) / 12, "month": Decimal(1), "year": Decimal(1) / 12}
CENTS = Decimal(100)


def subscription_mrr(subscription: dict) -> tuple[Decimal, str]:
    """Monthly recurring revenue and plan name of a Stripe subscription object."""
    total = Decimal(0)
    plan = ""
    best = Decimal(-1)
    for item in (subscription.get("items") or {}).get("data") or []:
        price = item.get("price") or item.get("plan") or {}
        recurring = price.get("recurring") or {"interval": price.get("interval"), "interval_count": 1}
        interval = recurring.get("interval") or "month"
        count = Decimal(recurring.get("interval_count") or 1)
        amount = Decimal(price.get("unit_amount") or price.get("amount") or 0) * Decimal(item.get("quantity") or 1)
        monthly = amount / CENTS * PER_MONTH.get(interval, Decimal(1)) / count
        total += monthly
        if monthly > best:
            best = monthly
            plan = price.get("nickname") or price.get("lookup_key") or price.get("product") or price.get("id") or ""
    return total.quantize(Decimal("0.01")), str(plan)


def subscription_period(subscription: dict) -> tuple[dt.datetime | None, dt.datetime | None, int | None]:
    """Start, end and length in months of a Stripe subscription's current billing period.

    API versions before 2025-03-31 carry the period on the subscription, later ones on each item.
    """
    items = (subscription.get("items") or {}).get("data") or []
    first = items[0] if items else {}
    start = subscription.get("current_period_start") or first.get("current_period_start")
    end = subscription.get("current_period_end") or first.get("current_period_end")
    price = first.get("price") or first.get("plan") or {}
    recurring = price.get("recurring") or {"interval": price.get("interval"), "interval_count": 1}
    count = int(recurring.get("interval_count") or 1)
    months = {"month": count, "year": 12 * count}.get(recurring.get("interval") or "")
    return parse_time(start), parse_time(end), months


def _stripe_signing_secret(value: str) -> None:
    if not value.startswith(("whsec_", "env:")):
        raise ValueError("A Stripe webhook signing secret starts with whsec_.")


class StripeConnector(Connector):
    provider = "stripe"
    label = "Stripe"
    type = Integration.Type.PAYMENT
    api_base = "https://api.stripe.com"
    settings_schema = (
        Setting(
            "api_key",
            "API key",
            kind="secret",
            required=True,
            for_pull=True,
            help="A secret or restricted key (sk_… or rk_…) that may read customers, subscriptions and events.",
        ),
        Setting(
            "signing_secret",
            "Webhook signing secret",
            kind="secret",
            for_connection=False,
            check=_stripe_signing_secret,
            help="Shown by Stripe on the webhook endpoint (whsec_…). Needed to accept Stripe's webhooks.",
        ),
        api_base_setting(api_base),
        SYNC_INTERVAL,
    )
    webhook_instructions = (
        "In Stripe, open Developers → Webhooks → Add endpoint, paste this URL and select the events "
        "customer.*, customer.subscription.*, invoice.paid and invoice.payment_failed. Stripe then "
        "shows the endpoint's signing secret (whsec_…): enter it above as the webhook signing secret. "
        "Each delivery carries a Stripe-Signature header; one signed more than 5 minutes away from "
        "our clock is refused."
    )

    # Push half ------------------------------------------------------------------------------
    def verify(self, delivery: Delivery) -> list[IncomingEvent]:
        header = delivery.headers.get("stripe-signature", "")
        secrets = self.secrets()
        if not header or not secrets:
            raise SignatureError("Missing Stripe-Signature header or signing secret.")
        payload = delivery.body.decode("utf-8", errors="replace")
        last_error: Exception | None = None
        for secret in secrets:
            try:
                stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=300)
                break
            except stripe.SignatureVerificationError as error:
                last_error = error
        else:
            code = "clock_skew" if "tolerance zone" in str(last_error) else "invalid_signature"
            raise SignatureError(str(last_error).split(".")[0], code)
        # The library rejects only stale timestamps; a future one beyond the window is refused here.
        timestamp = next(part[2:] for part in header.split(",") if part.startswith("t="))
        check_epoch_tolerance(timestamp, header="The Stripe-Signature timestamp")
        event = loads(delivery.body)
        if not isinstance(event, dict) or not event.get("id"):
            raise SignatureError("A Stripe event needs an id.", "invalid_payload")
        return [IncomingEvent(event_id=str(event["id"]), event_type=str(event.get("type", "")), body=payload)]

    def transform(self, event_type: str, payload: Any) -> list[CanonicalEvent]:
        obj = (payload.get("data") or {}).get("object") or {}
        version = parse_time(payload.get("created")) or timezone.now()
        return self.transform_object(event_type or payload.get("type", ""), obj, version)

    def transform_object(self, event_type: str, obj: dict, version: dt.datetime) -> list[CanonicalEvent]:
        kind = obj.get("object")
        if kind == "customer":
            if event_type == "customer.deleted":
                return []
            return [
                CustomerUpserted(
                    external_id=str(obj["id"]),
                    version=version,
                    email=obj.get("email") or None,
                    name=obj.get("name") or None,
                    company=(obj.get("metadata") or {}).get("company") or None,
                    signup_date=parse_time(obj.get("created")),
                )
            ]
        if kind == "subscription":
            mrr, plan = subscription_mrr(obj)
            status = "canceled" if event_type == "customer.subscription.deleted" else str(obj.get("status", ""))
            period_start, period_end, months = subscription_period(obj)
            return [
                SubscriptionChanged(
                    external_id=str(obj["id"]),
                    customer=CustomerRef(external_id=str(obj.get("customer") or "")),
                    version=version,
                    status=status,
                    mrr=mrr,
                    plan=plan,
                    cancelled_at=parse_time(obj.get("ended_at") or obj.get("canceled_at")),
                    period_start=period_start,
                    period_end=period_end,
                    bill_period_months=months,
                )
            ]
        if kind == "invoice" and event_type in {
            "invoice.payment_failed",
            "invoice.paid",
            "invoice.payment_succeeded",
        }:
            succeeded = event_type != "invoice.payment_failed"
            cents = obj.get("amount_paid") if succeeded else obj.get("amount_due")
            return [
                PaymentRecorded(
                    external_id=str(obj["id"]),
                    customer=CustomerRef(external_id=str(obj.get("customer") or "")),
                    version=version,
                    succeeded=succeeded,
                    amount=Decimal(cents or 0) / CENTS,
                    occurred_at=version,
                )
            ]
        return []

    # Pull half ------------------------------------------------------------------------------
    def client(self, attempts: int | None = None) -> ApiClient:
        key = secret_value(self.config.get("api_key"))
        base = self.config.get("api_base") or self.api_base
        return ApiClient(base, {"Authorization": f"Bearer {key}"}, attempts=attempts)

    def check_connection(self) -> str:
        client = self.client(attempts=1)
        try:
            self._call_for_check(lambda: client.get("/v1/customers", limit=1), str(client.http.base_url))
        finally:
            client.close()
        return "Stripe accepted the API key: it can read your customers."

    def _list(self, client: ApiClient, path: str, **params: Any) -> Iterator[list[dict]]:
        after: str | None = None
        while True:
            query = {"limit": 100, **params, **({"starting_after": after} if after else {})}
            body = client.get(path, **query)
            items = body.get("data") or []
            yield items
            if not body.get("has_more") or not items:
                return
            after = items[-1]["id"]

    def pull(self, cursor: dict[str, Any]) -> Iterator[Page]:
        client = self.client()
        try:
            if not cursor.get("events_since"):
                # First run: the current state of everything, then events from the moment we began.
                started = timezone.now()
                for path, event_type, params in (
                    ("/v1/customers", "customer.updated", {}),
                    ("/v1/subscriptions", "customer.subscription.updated", {"status": "all"}),
                ):
                    for items in self._list(client, path, **params):
                        events = [e for obj in items for e in self.transform_object(event_type, obj, started)]
                        yield Page(events=events, fetched=len(items))
                yield Page(events=[], fetched=0, cursor={"events_since": int(started.timestamp())})
                return
            since = int(cursor["events_since"])
            newest = since
            # Stripe lists events newest first; the cursor moves only when every page is read, and
            # re-reading the same second again is harmless (events are applied idempotently).
            for items in self._list(client, "/v1/events", **{"created[gte]": since}):
                events = [e for event in items for e in self.transform(event.get("type", ""), event)]
                newest = max([newest, *(int(event.get("created", 0)) for event in items)])
                yield Page(events=events, fetched=len(items))
            yield Page(events=[], fetched=0, cursor={"events_since": newest})
        finally:
            client.close()
