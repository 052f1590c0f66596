"""The only HTTP client that talks to user-supplied webhook URLs (Slack, Teams), with an SSRF guard.

A URL must be https and every address its host resolves to must be public. The connection then
goes to the address that was checked (the host name is kept for SNI, certificate checks and the
Host header), so a DNS answer that changes between the check and the connect cannot redirect it.
Redirects are never followed. `NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK` (tests only; production
settings force it off) lets loopback addresses through, and plain http to them, for local receivers.
Playbook webhook steps use the same client (`post`) with their own allowance,
`PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK`.
"""

import http.client
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from alerts.notifications.errors import DeliveryError, TransientDeliveryError, UnsafeWebhookURL

TIMEOUT_SECONDS = 10
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class WebhookTarget:
    scheme: str
    host: str
    port: int
    path: str
    address: str


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address.is_global and not address.is_multicast


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_url_shape(url: str, *, allow_loopback: bool) -> None:
    """What can be refused without resolving anything (for validating a definition): a scheme other
    than https (http only when loopback is allowed), credentials, a literal non-public address,
    `localhost`. Resolution at send time (`webhook_target`) remains the guard."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise UnsafeWebhookURL("Enter a valid URL.") from exc
    if parts.scheme != "https" and not (allow_loopback and parts.scheme == "http"):
        raise UnsafeWebhookURL("The webhook URL must be an https:// URL.")
    if parts.username or parts.password:
        raise UnsafeWebhookURL("The webhook URL must not contain credentials.")
    host = (parts.hostname or "").rstrip(".")
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        address = None
    loopback = host == "localhost" or host.endswith(".localhost") or (address is not None and _is_loopback(address))
    if loopback and allow_loopback:
        return
    if loopback or (address is not None and not _is_public(address)):
        raise UnsafeWebhookURL("The webhook URL must reach a public address.")


def webhook_target(url: str, *, allow_loopback: bool | None = None) -> WebhookTarget:
    """Check `url` and resolve it to the one address to connect to; raise UnsafeWebhookURL if unsafe.
    `allow_loopback`: None means the notifications' setting."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookURL("Enter a webhook URL.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookURL("Enter a valid URL.") from exc
    if allow_loopback is None:
        allow_loopback = getattr(settings, "NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK", False)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeWebhookURL("The webhook URL must be an https URL.")
    if parts.username or parts.password:
        raise UnsafeWebhookURL("The webhook URL must not contain credentials.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeWebhookURL(f"The webhook host {parts.hostname!r} does not resolve.") from exc
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    if not addresses:
        raise UnsafeWebhookURL(f"The webhook host {parts.hostname!r} does not resolve.")
    for address in addresses:
        if _is_public(address) or (allow_loopback and _is_loopback(address)):
            continue
        raise UnsafeWebhookURL(f"The webhook host resolves to a non-public address ({address}).")
    if parts.scheme == "http" and not (allow_loopback and all(_is_loopback(a) for a in addresses)):
        raise UnsafeWebhookURL("The webhook URL must be an https URL.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookTarget(parts.scheme, parts.hostname, port, path, str(sorted(addresses, key=str)[0]))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    text: str
    retry_after: float | None


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float = TIMEOUT_SECONDS,
    allow_loopback: bool | None = None,
) -> WebhookResponse:
    """POST `body` to a checked, pinned address; any status comes back (the caller judges it).
    UnsafeWebhookURL before any connection; DeliveryError for a rejected TLS certificate;
    TransientDeliveryError for network errors."""
    target = webhook_target(url, allow_loopback=allow_loopback)
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = cls(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(64 * 1024).decode("utf-8", "replace")
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"TLS certificate rejected: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
    return WebhookResponse(response.status, text, _retry_after(response.getheader("Retry-After")))


def post_json(url: str, payload: dict[str, Any], *, timeout: float = TIMEOUT_SECONDS) -> str:
    """POST `payload` as JSON; return the response text. 5xx, 429 and network errors are transient."""
    response = post(
        url,
        json.dumps(payload).encode(),
        {"Content-Type": "application/json", "User-Agent": "ChurnShield-Notifier/1"},
        timeout=timeout,
    )
    status, text = response.status, response.text
    if status == 429 or status >= 500:
        raise TransientDeliveryError(f"HTTP {status}: {text[:200]}", response.retry_after)
    if status >= 300:
        # 3xx included: a redirect is never followed (it could point anywhere, loopback included).
        raise DeliveryError(f"HTTP {status}: {text[:200]}")
    return text
