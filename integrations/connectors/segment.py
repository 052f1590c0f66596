"""Segment: identify / group / track / page events → user sessions, last login, feature usage.

Push only (Segment has no pull API). `X-Signature` = hex HMAC-SHA1(shared secret, body). The
scheme signs no timestamp, so replays are stopped by the dedupe on `messageId` (kept ≥ 7 days),
not by a time window. Sessions: `context.sessionId` when the source sends one, else one session
per user per hour.
"""

import hashlib
import hmac
from typing import Any

from django.utils import timezone

from customers.history.canonical import ActivitySeen, CanonicalEvent, CustomerRef, CustomerUpserted, UserLinked
from customers.sessions import session_key
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


def segment_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class SegmentConnector(Connector):
    provider = "segment"
    label = "Segment"
    type = Integration.Type.ANALYTICS
    settings_schema = (
        Setting(
            "signing_secret",
            "Shared secret",
            kind="secret",
            required=True,
            for_connection=False,
            help="The shared secret set on the Segment webhook destination.",
        ),
    )
    webhook_instructions = (
        "In Segment, add a Webhooks destination to your source, paste this URL and set a shared "
        "secret; enter the same secret above. Segment signs each request with it (X-Signature, "
        "HMAC-SHA1). Segment has no API to test: send a test event from Segment and look for it "
        "under Webhook events."
    )

    def verify(self, delivery: Delivery) -> list[IncomingEvent]:
        signature = delivery.headers.get("x-signature", "")
        secrets = self.secrets()
        if not signature or not secrets:
            raise SignatureError("Missing X-Signature or the shared secret.")
        if not any(
            hmac.compare_digest(segment_signature(s, delivery.body).encode(), signature.encode()) for s in secrets
        ):
            raise SignatureError("The Segment signature does not match.")
        payload = loads(delivery.body)
        if not isinstance(payload, dict) or not payload.get("messageId"):
            raise SignatureError("A Segment event needs a messageId.", "invalid_payload")
        return [
            IncomingEvent(
                event_id=str(payload["messageId"]), event_type=str(payload.get("type", "")), body=delivery.body.decode()
            )
        ]

    def transform(self, event_type: str, payload: Any) -> list[CanonicalEvent]:
        kind = event_type or payload.get("type", "")
        context = payload.get("context") or {}
        traits = payload.get("traits") or context.get("traits") or {}
        user_id = payload.get("userId") or payload.get("anonymousId")
        at = parse_time(payload.get("timestamp") or payload.get("sentAt")) or timezone.now()
        group_id = payload.get("groupId") or context.get("groupId") or (payload.get("properties") or {}).get("groupId")
        ref = CustomerRef(
            external_id=str(group_id) if group_id else None,
            user_id=str(payload["userId"]) if payload.get("userId") else None,
            email=traits.get("email") if kind != "group" else None,
        )
        events: list[CanonicalEvent] = []
        if kind == "group" and group_id:
            if traits.get("email"):
                events.append(
                    CustomerUpserted(
                        external_id=str(group_id),
                        version=at,
                        email=traits["email"],
                        name=traits.get("name"),
                        company=traits.get("name"),
                        plan=traits.get("plan"),
                    )
                )
            if payload.get("userId"):
                group_ref = CustomerRef(external_id=str(group_id), email=traits.get("email"))
                events.append(UserLinked(user_id=str(payload["userId"]), customer=group_ref, version=at))
            return events
        if not user_id:
            return []
        if kind == "identify" and payload.get("userId") and (group_id or traits.get("email")):
            events.append(UserLinked(user_id=str(payload["userId"]), customer=ref, version=at))
        session = session_key(user_id, at, context.get("sessionId"))
        if kind in {"identify", "track", "page", "screen"}:
            events.append(
                ActivitySeen(
                    session_id=str(session),
                    customer=ref,
                    at=at,
                    page=kind in {"page", "screen"},
                    action=str(payload.get("event")) if kind == "track" and payload.get("event") else None,
                )
            )
        return events
