"""Generic signed JSON webhook: any system that signs the Standard Webhooks way (Svix's scheme).

Headers `webhook-id`, `webhook-timestamp`, `webhook-signature` (or the `svix-*` names); the
signature is base64(HMAC-SHA256(base64-decoded `whsec_` secret, "id.timestamp.body")), several
space-separated `v1,<sig>` entries allowed; ±5 min both ways (the `standardwebhooks` library).
The body is a canonical event: `{"type": "<kind>", "data": {...}}` with kinds `customer.upserted`,
`ticket.changed`, `nps.received`, `payment.recorded`, `subscription.changed`, `activity.seen`.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from customers.history.canonical import (
    ActivitySeen,
    CanonicalEvent,
    CustomerRef,
    CustomerUpserted,
    NpsReceived,
    PaymentRecorded,
    SubscriptionChanged,
    TicketChanged,
)
from integrations.connectors.base import (
    Connector,
    Delivery,
    IncomingEvent,
    Setting,
    SignatureError,
    loads,
    parse_time,
)
from integrations.models import Integration


class BadEvent(ValueError):
    """The generic event is missing a field or has one of the wrong type."""


def _ref(data: dict) -> CustomerRef:
    ref = CustomerRef(
        external_id=str(data["customerId"]) if data.get("customerId") else None,
        email=data.get("customerEmail") or None,
    )
    if not (ref.external_id or ref.email):
        raise BadEvent("customerId or customerEmail is required.")
    return ref


def _time(data: dict, key: str, required: bool = True) -> Any:
    value = parse_time(data.get(key))
    if value is None and required:
        raise BadEvent(f"{key} is required (ISO 8601 or epoch).")
    return value


def _money(data: dict, key: str) -> Decimal:
    try:
        value = Decimal(str(data.get(key, 0)))
    except InvalidOperation as error:
        raise BadEvent(f"{key} must be a number.") from error
    if value < 0 or not value.is_finite():
        raise BadEvent(f"{key} must be a non-negative number.")
    return value


def _standard_secret(value: str) -> None:
    if value.startswith("env:"):
        return
    try:
        Webhook(value)
    except (ValueError, TypeError) as error:
        raise ValueError("A Standard Webhooks secret: whsec_ followed by base64.") from error


class GenericConnector(Connector):
    provider = "generic"
    label = "Signed JSON webhooks (Standard Webhooks)"
    type = Integration.Type.OTHER
    settings_schema = (
        Setting(
            "signing_secret",
            "Signing secret",
            kind="secret",
            required=True,
            for_connection=False,
            check=_standard_secret,
            placeholder="whsec_…",
            help="The whsec_… secret the sending system signs with.",
        ),
    )
    webhook_instructions = (
        "Give the sending system this URL and the whsec_ secret above. It signs the Standard "
        "Webhooks way (as Svix does): webhook-id, webhook-timestamp and webhook-signature headers, "
        'within 5 minutes of our clock. The body is {"type": …, "data": {…}} with a type such as '
        "customer.upserted, ticket.changed, nps.received, payment.recorded, subscription.changed "
        "or activity.seen."
    )

    def verify(self, delivery: Delivery) -> list[IncomingEvent]:
        headers = {k.replace("svix-", "webhook-"): v for k, v in delivery.headers.items()}
        secrets = self.secrets()
        if not secrets:
            raise SignatureError("No signing secret is configured.")
        error: Exception | None = None
        for secret in secrets:
            try:
                Webhook(secret).verify(delivery.body, headers, json_parse=False)
                break
            except WebhookVerificationError as failure:
                error = failure
            except (ValueError, TypeError) as failure:  # malformed header entries, non-base64 secrets
                error = failure
        else:
            message = str(error)
            code = "clock_skew" if "too old" in message or "too new" in message else "invalid_signature"
            raise SignatureError(f"Standard Webhooks verification failed: {message}", code)
        payload = loads(delivery.body)
        if not isinstance(payload, dict):
            raise SignatureError("The event is a JSON object.", "invalid_payload")
        return [
            IncomingEvent(
                event_id=headers["webhook-id"], event_type=str(payload.get("type", "")), body=delivery.body.decode()
            )
        ]

    def transform(self, event_type: str, payload: Any) -> list[CanonicalEvent]:
        data = payload.get("data")
        if not isinstance(data, dict):
            raise BadEvent("data must be an object.")
        try:
            return [self._event(event_type or payload.get("type", ""), data)]
        except KeyError as error:
            raise BadEvent(f"{error.args[0]} is required.") from error

    def _event(self, kind: str, data: dict) -> CanonicalEvent:
        if kind == "customer.upserted":
            return CustomerUpserted(
                external_id=str(data["id"]),
                version=_time(data, "updatedAt"),
                email=data.get("email"),
                name=data.get("name"),
                company=data.get("company"),
                plan=data.get("plan"),
                owner_email=data.get("ownerEmail"),
                signup_date=_time(data, "signupDate", required=False),
            )
        if kind == "ticket.changed":
            return TicketChanged(
                external_id=str(data["id"]),
                customer=_ref(data),
                version=_time(data, "updatedAt"),
                subject=str(data.get("subject") or "(no subject)"),
                status=str(data.get("status", "open"))
                if data.get("status") in {"open", "pending", "solved", "closed"}
                else "open",
                priority=str(data.get("priority", "normal")),
                opened_at=_time(data, "openedAt", required=False),
                solved_at=_time(data, "solvedAt", required=False),
            )
        if kind == "nps.received":
            score = data.get("score")
            if not isinstance(score, int) or not 0 <= score <= 10:
                raise BadEvent("score must be an integer from 0 to 10.")
            return NpsReceived(
                external_id=str(data["id"]),
                customer=_ref(data),
                version=_time(data, "respondedAt"),
                score=score,
                responded_at=_time(data, "respondedAt"),
                comment=str(data.get("comment") or ""),
            )
        if kind == "payment.recorded":
            return PaymentRecorded(
                external_id=str(data["id"]),
                customer=_ref(data),
                version=_time(data, "occurredAt"),
                succeeded=bool(data.get("succeeded")),
                amount=_money(data, "amount"),
                occurred_at=_time(data, "occurredAt"),
            )
        if kind == "subscription.changed":
            return SubscriptionChanged(
                external_id=str(data["id"]),
                customer=_ref(data),
                version=_time(data, "updatedAt"),
                status=str(data["status"]),
                mrr=_money(data, "mrr"),
                plan=str(data.get("plan") or ""),
                cancelled_at=_time(data, "cancelledAt", required=False),
            )
        if kind == "activity.seen":
            return ActivitySeen(
                session_id=str(data["sessionId"]),
                customer=_ref(data),
                at=_time(data, "at"),
                page=bool(data.get("page")),
                action=data.get("action"),
            )
        raise BadEvent(f"Unknown event type {kind!r}.")
