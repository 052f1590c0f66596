"""HubSpot: companies and contacts → customers, owners → our users (matched by e-mail).

Push: `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret, method + URI + body +
timestamp)), `X-HubSpot-Request-Timestamp` in milliseconds. A delivery batches events; each is
stored on its own (deduped on `eventId`). HubSpot's events name an object and a property, not
the object's state, so processing fetches the object (`updatedAt` is the version): order of
deliveries then cannot matter.
Pull: owners, then companies and contacts modified since the cursor (search API, ascending by
modification time, `paging.next.after`), the cursor moving page by page.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

from customers.history.canonical import CanonicalEvent, CustomerUpserted, OwnerSeen
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

COMPANY_PROPERTIES = ["name", "domain", "hubspot_owner_id", "hs_lastmodifieddate", "createdate"]
CONTACT_PROPERTIES = ["email", "firstname", "lastname", "associatedcompanyid", "hubspot_owner_id", "lastmodifieddate"]


def hubspot_v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


class HubSpotConnector(Connector):
    provider = "hubspot"
    label = "HubSpot"
    type = Integration.Type.CRM
    api_base = "https://api.hubapi.com"
    settings_schema = (
        Setting(
            "access_token",
            "Access token",
            kind="secret",
            required=True,
            for_pull=True,
            help="A private app's access token (pat-…) with the CRM objects and owners read scopes.",
        ),
        Setting(
            "client_secret",
            "Client secret",
            kind="secret",
            for_connection=False,
            help="Your HubSpot app's client secret: HubSpot signs its webhooks with it.",
        ),
        Setting(
            "webhook_url",
            "Webhook URL HubSpot calls",
            kind="url",
            for_connection=False,
            help="Only behind a proxy that changes the address: the exact URL entered in HubSpot (it is signed).",
        ),
        api_base_setting(api_base),
        SYNC_INTERVAL,
    )
    webhook_instructions = (
        "In your HubSpot app, open Webhooks, set the target URL to this URL and subscribe to company "
        "and contact creation and property changes. HubSpot signs each request (X-HubSpot-Signature-v3) "
        "with the app's client secret: enter it above as the client secret."
    )

    def verify(self, delivery: Delivery) -> list[IncomingEvent]:
        signature = delivery.headers.get("x-hubspot-signature-v3", "")
        timestamp = delivery.headers.get("x-hubspot-request-timestamp", "")
        secrets = self.secrets("client_secret")
        if not signature or not timestamp or not secrets:
            raise SignatureError("Missing X-HubSpot-Signature-v3, its timestamp, or the client secret.")
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) < 12:
            raise SignatureError("X-HubSpot-Request-Timestamp must be epoch milliseconds.")
        uri = self.config.get("webhook_url") or delivery.url
        expected = [hubspot_v3_signature(s, delivery.method, uri, delivery.body, timestamp) for s in secrets]
        if not any(hmac.compare_digest(e.encode(), signature.encode()) for e in expected):
            raise SignatureError("The HubSpot v3 signature does not match.")
        check_epoch_tolerance(timestamp, header="X-HubSpot-Request-Timestamp", milliseconds=True)
        payload = loads(delivery.body)
        items = payload if isinstance(payload, list) else [payload]
        events = []
        for item in items:
            if not isinstance(item, dict) or item.get("eventId") is None:
                raise SignatureError("Every HubSpot event needs an eventId.", "invalid_payload")
            events.append(
                IncomingEvent(
                    event_id=str(item["eventId"]),
                    event_type=str(item.get("subscriptionType", "")),
                    body=json.dumps(item, separators=(",", ":")),
                )
            )
        return events

    def transform(self, event_type: str, payload: Any) -> list[CanonicalEvent]:
        object_type, _, action = event_type.partition(".")
        if object_type not in {"company", "contact"} or action == "deletion":
            return []
        client = self.client()
        try:
            path = "companies" if object_type == "company" else "contacts"
            properties = COMPANY_PROPERTIES if object_type == "company" else CONTACT_PROPERTIES
            obj = client.get(f"/crm/v3/objects/{path}/{payload['objectId']}", properties=",".join(properties))
            events: list[CanonicalEvent] = []
            owner_id = (obj.get("properties") or {}).get("hubspot_owner_id")
            if owner_id:
                events.extend(self.transform_owner(client.get(f"/crm/v3/owners/{owner_id}")))
            events.extend(self.transform_company(obj) if object_type == "company" else self.transform_contact(obj))
            return events
        finally:
            client.close()

    @staticmethod
    def transform_owner(owner: dict) -> list[CanonicalEvent]:
        if not owner.get("email"):
            return []
        version = parse_time(owner.get("updatedAt")) or parse_time(owner.get("createdAt"))
        return [OwnerSeen(external_id=str(owner["id"]), email=owner["email"], version=version)]

    @staticmethod
    def transform_company(obj: dict) -> list[CanonicalEvent]:
        props = obj.get("properties") or {}
        return [
            CustomerUpserted(
                external_id=str(obj["id"]),
                version=parse_time(obj.get("updatedAt") or props.get("hs_lastmodifieddate")),
                name=props.get("name") or None,
                company=props.get("name") or None,
                owner_external_id=props.get("hubspot_owner_id") or None,
                signup_date=parse_time(obj.get("createdAt") or props.get("createdate")),
            )
        ]

    @staticmethod
    def transform_contact(obj: dict) -> list[CanonicalEvent]:
        props = obj.get("properties") or {}
        if not props.get("email"):
            return []
        full_name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p) or None
        return [
            CustomerUpserted(
                kind="contact",
                external_id=str(obj["id"]),
                version=parse_time(obj.get("updatedAt") or props.get("lastmodifieddate")),
                email=props["email"],
                name=full_name,
                owner_external_id=props.get("hubspot_owner_id") or None,
                signup_date=parse_time(obj.get("createdAt")),
                account_external_id=str(props["associatedcompanyid"]) if props.get("associatedcompanyid") else None,
            )
        ]

    def client(self, attempts: int | None = None) -> ApiClient:
        token = secret_value(self.config.get("access_token"))
        base = self.config.get("api_base") or self.api_base
        return ApiClient(base, {"Authorization": f"Bearer {token}"}, attempts=attempts)

    def check_connection(self) -> str:
        client = self.client(attempts=1)
        try:
            self._call_for_check(lambda: client.get("/crm/v3/owners", limit=1), str(client.http.base_url))
        finally:
            client.close()
        return "HubSpot accepted the access token: it can read your owners."

    def pull(self, cursor: dict[str, Any]) -> Iterator[Page]:
        client = self.client()
        try:
            after: str | None = None
            while True:
                body = client.get("/crm/v3/owners", limit=100, **({"after": after} if after else {}))
                results = body.get("results") or []
                yield Page(events=[e for o in results for e in self.transform_owner(o)], fetched=len(results))
                after = ((body.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
            for path, prop, transform in (
                ("companies", "hs_lastmodifieddate", self.transform_company),
                ("contacts", "lastmodifieddate", self.transform_contact),
            ):
                since = int(cursor.get(f"{path}_since", 0))
                after = None
                while True:
                    query = {
                        "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": str(since)}]}],
                        "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                        "properties": COMPANY_PROPERTIES if path == "companies" else CONTACT_PROPERTIES,
                        "limit": 100,
                        **({"after": after} if after else {}),
                    }
                    body = client.post(f"/crm/v3/objects/{path}/search", query)
                    results = body.get("results") or []
                    newest = max([since, *(int(parse_time(r.get("updatedAt")).timestamp() * 1000) for r in results)])
                    cursor = {**cursor, f"{path}_since": newest}
                    yield Page(events=[e for r in results for e in transform(r)], fetched=len(results), cursor=cursor)
                    after = ((body.get("paging") or {}).get("next") or {}).get("after")
                    if not after or not results:
                        break
        finally:
            client.close()
