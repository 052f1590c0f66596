"""Loopback servers speaking the providers' API shapes, and signing done the providers' way.

The servers are real HTTP on 127.0.0.1 (a thread each). Faults are scripted per path: a queue of
responses (429 with Retry-After, 500, a stall) served before the real answer.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import stripe


class FakeProvider:
    """A tiny HTTP API: `routes[(method, path)] = handler(query, body) -> (status, json, headers)`."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable[[dict, Any], tuple[int, Any, dict]]] = {}
        self.faults: dict[str, deque] = defaultdict(deque)
        self.calls: list[tuple[str, str, dict, Any, float]] = []
        # When set: (the Authorization header the provider accepts, the answer to any other one).
        self.auth: tuple[str, tuple[int, Any, dict]] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.calls.append((method, url.path, query, body, time.monotonic()))
                status, payload, headers = fake.answer(
                    method, url.path, query, body, authorization=self.headers.get("Authorization")
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(
        self, method: str, path: str, query: dict, body: Any, authorization: str | None = None
    ) -> tuple[int, Any, dict]:
        if self.auth is not None and authorization != self.auth[0]:
            return self.auth[1]
        if self.faults[path]:
            fault = self.faults[path].popleft()
            if fault == "stall":
                time.sleep(2)
                return 200, {}, {}
            return fault
        for (route_method, pattern), handler in self.routes.items():
            if route_method == method and (
                pattern == path or (pattern.endswith("*") and path.startswith(pattern[:-1]))
            ):
                return handler(path, query, body)
        return 404, {"error": "no route"}, {}

    def fail(self, path: str, *responses: Any) -> None:
        self.faults[path].extend(responses)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- Stripe API shape -------------------------------------------------------------------------------


def stripe_list(items: list[dict], query: dict, url: str) -> tuple[int, Any, dict]:
    """Stripe's list envelope with `limit` and `starting_after` pagination."""
    limit = int(query.get("limit", 10))
    start = 0
    if query.get("starting_after"):
        start = next(i for i, item in enumerate(items) if item["id"] == query["starting_after"]) + 1
    page = items[start : start + limit]
    return 200, {"object": "list", "url": url, "has_more": start + limit < len(items), "data": page}, {}


def stripe_customer(n: int, email: str, created: int = 1_700_000_000) -> dict:
    return {
        "id": f"cus_{n}",
        "object": "customer",
        "email": email,
        "name": f"Acme {n}",
        "created": created,
        "metadata": {"company": f"Acme {n} Inc"},
    }


def stripe_subscription(
    n: int,
    customer: str,
    status: str = "active",
    cents: int = 50_000,
    interval: str = "month",
    quantity: int = 1,
    nickname: str = "Pro",
    ended_at: int | None = None,
) -> dict:
    return {
        "id": f"sub_{n}",
        "object": "subscription",
        "customer": customer,
        "status": status,
        "ended_at": ended_at,
        "canceled_at": ended_at,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{n}",
                    "quantity": quantity,
                    "price": {
                        "id": f"price_{n}",
                        "nickname": nickname,
                        "unit_amount": cents,
                        "recurring": {"interval": interval, "interval_count": 1},
                    },
                }
            ],
        },
    }


def stripe_event(event_id: str, event_type: str, obj: dict, created: int) -> dict:
    return {"id": event_id, "object": "event", "type": event_type, "created": created, "data": {"object": obj}}


def stripe_header(body: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed by the official library."""
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)


# --- Other providers' signatures (computed here from their documentation, not with our code) ---------


def hubspot_headers(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    source = f"{method}{uri}".encode() + body + str(timestamp_ms).encode()
    signature = base64.b64encode(hmac.digest(secret.encode(), source, "sha256")).decode()
    return {"HTTP_X_HUBSPOT_SIGNATURE_V3": signature, "HTTP_X_HUBSPOT_REQUEST_TIMESTAMP": str(timestamp_ms)}


def zendesk_headers(secret: str, body: bytes, timestamp: str) -> dict[str, str]:
    signature = base64.b64encode(hmac.digest(secret.encode(), timestamp.encode() + body, "sha256")).decode()
    return {"HTTP_X_ZENDESK_WEBHOOK_SIGNATURE": signature, "HTTP_X_ZENDESK_WEBHOOK_SIGNATURE_TIMESTAMP": timestamp}


def segment_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"HTTP_X_SIGNATURE": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


def standard_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    import datetime as dt

    from standardwebhooks.webhooks import Webhook

    signature = Webhook(secret).sign(msg_id, dt.datetime.fromtimestamp(timestamp, tz=dt.UTC), body.decode())
    return {"HTTP_WEBHOOK_ID": msg_id, "HTTP_WEBHOOK_TIMESTAMP": str(timestamp), "HTTP_WEBHOOK_SIGNATURE": signature}
