"""The webhook route in the OpenAPI schema.

`POST /api/webhooks/<provider>/<integration id>` is served by `integrations.asgi` before Django's
URL conf (churnshield/asgi.py), so drf-spectacular cannot see it; this post-processing hook
writes the operation the receiver answers, so the schema stays the API's whole inventory.
`integrations/tests/test_webhooks.py` checks each documented status against the receiver.
"""

from typing import Any

from integrations.connectors.base import providers

PATH = "/api/webhooks/{provider}/{integration_id}"
ERRORS = {
    "400": "Signed, but not UTF-8 JSON of the provider's event shape.",
    "401": "Bad, missing or stale signature (`code` says which: `invalid_signature` or `clock_skew`).",
    "404": "No integration of this provider with this id.",
    "413": "Body over DATA_UPLOAD_MAX_MEMORY_SIZE; refused unread.",
    "503": "The event could not be stored in time; nothing was acknowledged, the provider retries.",
}


def add_webhook_route(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["WebhookAccepted"] = {
        "type": "object",
        "properties": {
            "received": {
                "type": "integer",
                "description": "Events in the delivery (duplicates included, stored once).",
            }
        },
        "required": ["received"],
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    result.setdefault("paths", {})[PATH] = {
        "post": {
            "operationId": "webhooks_create",
            "description": (
                "Authenticated by the provider's signature over the raw body, not by a JWT: providers "
                "cannot hold our tokens, and the signature (plus a ±5 min timestamp where the scheme "
                "signs one, and the event-id dedupe) proves origin, integrity and freshness. A bad "
                "signature writes nothing."
            ),
            "parameters": [
                {"in": "path", "name": "integration_id", "schema": {"type": "integer"}, "required": True},
                {
                    "in": "path",
                    "name": "provider",
                    "schema": {"type": "string", "enum": providers()},
                    "required": True,
                },
            ],
            "tags": ["webhooks"],
            "requestBody": {
                "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {}}}}
            },
            "responses": {
                "200": {
                    "description": "Stored (a duplicate too, once); applied after the answer.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookAccepted"}}},
                },
                **{status: {"description": text, "content": error} for status, text in ERRORS.items()},
            },
        }
    }
    return result
