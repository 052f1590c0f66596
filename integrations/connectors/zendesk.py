"""Zendesk: tickets (support load, timeline) and satisfaction ratings (as NPS-scale answers).

Push: `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(secret, timestamp + body)) with
`X-Zendesk-Webhook-Signature-Timestamp`; Zendesk states no tolerance, we apply ±5 min. Event
subscription payloads (`detail` is the ticket) and trigger payloads (`ticket`, with
`requester.email`) are both read. Tickets find their customer by the requester's e-mail.
Pull: the cursor-based incremental ticket export (`include=users` for e-mails) and satisfaction
ratings since the cursor.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from typing import Any

from customers.history.canonical import CanonicalEvent, CustomerRef, NpsReceived, TicketChanged
from integrations.connectors.base import (
    SYNC_INTERVAL,
    ConnectionFailed,
    Connector,
    Delivery,
    IncomingEvent,
    Page,
    Setting,
    SignatureError,
    api_base_setting,
    body_hash,
    check_tolerance,
    loads,
    parse_time,
    secret_value,
)
from integrations.connectors.http import ApiClient
from integrations.models import Integration

STATUSES = {"new": "open", "open": "open", "pending": "pending", "hold": "pending", "solved": "solved"}
PRIORITIES = {"low", "normal", "high", "urgent"}
# CSAT is good/bad; on the NPS scale "good" is a promoter and "bad" a detractor.
CSAT_SCORES = {"good": 9, "bad": 3}


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


def _subdomain(value: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise ValueError("Only the part before .zendesk.com, in lower case: for acme.zendesk.com enter acme.")


class ZendeskConnector(Connector):
    provider = "zendesk"
    label = "Zendesk"
    type = Integration.Type.SUPPORT
    settings_schema = (
        Setting(
            "subdomain",
            "Zendesk subdomain",
            check=_subdomain,
            placeholder="acme",
            help="The part before .zendesk.com in your help desk's address.",
        ),
        Setting("email", "Agent e-mail", kind="email", required=True, help="The agent the API token belongs to."),
        Setting(
            "api_token",
            "API token",
            kind="secret",
            required=True,
            for_pull=True,
            help="Admin Center → Apps and integrations → Zendesk API → API tokens.",
        ),
        Setting(
            "signing_secret",
            "Webhook signing secret",
            kind="secret",
            for_connection=False,
            help="Shown on the Zendesk webhook's page. Needed to accept Zendesk's webhooks.",
        ),
        api_base_setting("https://<subdomain>.zendesk.com"),
        SYNC_INTERVAL,
    )
    webhook_instructions = (
        "In Zendesk Admin Center, open Apps and integrations → Webhooks → Create webhook, choose "
        "“Trigger or automation” or the ticket and satisfaction events, paste this URL as the endpoint, "
        "method POST, format JSON. On the webhook's page reveal the signing secret and enter it above "
        "as the webhook signing secret (Zendesk signs X-Zendesk-Webhook-Signature with it)."
    )

    def verify(self, delivery: Delivery) -> list[IncomingEvent]:
        signature = delivery.headers.get("x-zendesk-webhook-signature", "")
        timestamp = delivery.headers.get("x-zendesk-webhook-signature-timestamp", "")
        secrets = self.secrets()
        if not signature or not timestamp or not secrets:
            raise SignatureError("Missing X-Zendesk-Webhook-Signature, its timestamp, or the signing secret.")
        expected = [zendesk_signature(s, timestamp, delivery.body) for s in secrets]
        if not any(hmac.compare_digest(e.encode(), signature.encode()) for e in expected):
            raise SignatureError("The Zendesk signature does not match.")
        try:
            signed_at = parse_time(timestamp)
        except ValueError as error:
            raise SignatureError("X-Zendesk-Webhook-Signature-Timestamp is not a time.") from error
        check_tolerance(signed_at)
        payload = loads(delivery.body)
        if not isinstance(payload, dict):
            raise SignatureError("A Zendesk event is a JSON object.", "invalid_payload")
        event_id = str(payload.get("id") or body_hash(delivery.body))
        return [IncomingEvent(event_id=event_id, event_type=str(payload.get("type", "")), body=delivery.body.decode())]

    def transform(self, event_type: str, payload: Any) -> list[CanonicalEvent]:
        if payload.get("satisfaction_rating") or "satisfaction" in event_type:
            rating = payload.get("satisfaction_rating") or payload.get("detail") or {}
            return self.transform_rating(rating)
        ticket = payload.get("ticket") or payload.get("detail") or {}
        email = ((ticket.get("requester") or {}).get("email")) or ticket.get("requester_email")
        return self.transform_ticket(ticket, email)

    @staticmethod
    def transform_ticket(ticket: dict, requester_email: str | None) -> list[CanonicalEvent]:
        if not ticket.get("id"):
            return []
        status = STATUSES.get(str(ticket.get("status", "")).lower(), "closed")
        priority = str(ticket.get("priority") or "normal").lower()
        version = parse_time(ticket.get("updated_at")) or parse_time(ticket.get("created_at"))
        return [
            TicketChanged(
                external_id=str(ticket["id"]),
                customer=CustomerRef(email=requester_email),
                version=version,
                subject=str(ticket.get("subject") or ticket.get("raw_subject") or "(no subject)"),
                status=status,
                priority=priority if priority in PRIORITIES else "normal",
                opened_at=parse_time(ticket.get("created_at")),
                solved_at=version if status in ("solved", "closed") else None,
            )
        ]

    @staticmethod
    def transform_rating(rating: dict) -> list[CanonicalEvent]:
        score = rating.get("score")
        score = CSAT_SCORES.get(score, score) if isinstance(score, str) else score
        if not isinstance(score, int) or not rating.get("id"):
            return []  # offered, not answered
        return [
            NpsReceived(
                external_id=f"csat:{rating['id']}",
                customer=CustomerRef(ticket_external_id=str(rating.get("ticket_id") or "")),
                version=parse_time(rating.get("updated_at") or rating.get("created_at")),
                score=score,
                responded_at=parse_time(rating.get("created_at")),
                comment=str(rating.get("comment") or ""),
            )
        ]

    @classmethod
    def settings_errors(cls, config: dict[str, Any]) -> dict[str, str]:
        if not config.get("subdomain") and not config.get("api_base"):
            return {"subdomain": "Enter your Zendesk subdomain."}
        return {}

    def client(self, attempts: int | None = None) -> ApiClient:
        token = secret_value(self.config.get("api_token"))
        email = self.config.get("email", "")
        basic = base64.b64encode(f"{email}/token:{token}".encode()).decode()
        base = self.config.get("api_base") or f"https://{self.config.get('subdomain', 'example')}.zendesk.com"
        return ApiClient(base, {"Authorization": f"Basic {basic}"}, attempts=attempts)

    def check_connection(self) -> str:
        client = self.client(attempts=1)
        try:
            body = self._call_for_check(lambda: client.get("/api/v2/users/me.json"), str(client.http.base_url))
        finally:
            client.close()
        user = (body or {}).get("user") or {}
        # Zendesk answers an unrecognised caller as an anonymous visitor rather than with a 401.
        if not user.get("id"):
            raise ConnectionFailed("Zendesk did not recognise the agent e-mail and API token.")
        return f"Zendesk accepted the API token of {user.get('email') or 'the agent'}."

    def pull(self, cursor: dict[str, Any]) -> Iterator[Page]:
        client = self.client()
        try:
            while True:
                params: dict[str, Any] = {"include": "users"}
                if cursor.get("tickets_cursor"):
                    params["cursor"] = cursor["tickets_cursor"]
                else:
                    params["start_time"] = int(cursor.get("tickets_start", 0))
                body = client.get("/api/v2/incremental/tickets/cursor.json", **params)
                emails = {u["id"]: u.get("email") for u in body.get("users") or []}
                tickets = body.get("tickets") or []
                events = [e for t in tickets for e in self.transform_ticket(t, emails.get(t.get("requester_id")))]
                if body.get("after_cursor"):
                    cursor = {**cursor, "tickets_cursor": body["after_cursor"]}
                yield Page(events=events, fetched=len(tickets), cursor=cursor)
                if body.get("end_of_stream") or not tickets:
                    break
            since = int(cursor.get("ratings_since", 0))
            after: str | None = None
            while True:
                params = {"start_time": since, "page[size]": 100, **({"page[after]": after} if after else {})}
                body = client.get("/api/v2/satisfaction_ratings", **params)
                ratings = body.get("satisfaction_ratings") or []
                newest = max([since, *(int(parse_time(r.get("updated_at")).timestamp()) for r in ratings)])
                cursor = {**cursor, "ratings_since": newest}
                # Ratings of the page just applied must find their tickets: ticket pages come first.
                yield Page(
                    events=[e for r in ratings for e in self.transform_rating(r)], fetched=len(ratings), cursor=cursor
                )
                meta = body.get("meta") or {}
                after = meta.get("after_cursor")
                if not meta.get("has_more") or not after:
                    break
        finally:
            client.close()
