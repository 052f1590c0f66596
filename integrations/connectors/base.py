"""What every connector provides, and the helpers they share."""

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from django.conf import settings
from django.utils import timezone

from customers.history.canonical import CanonicalEvent
from integrations.connectors.http import PermanentError, TransientError
from integrations.models import Integration


class SignatureError(Exception):
    """The delivery is not from the provider (or not now). `code` tells a bad secret from clock skew."""

    def __init__(self, message: str, code: str = "invalid_signature") -> None:
        super().__init__(message)
        self.code = code


class NotSupported(Exception):
    """The connector has no such half (Segment has no pull API)."""


class ConnectionFailed(Exception):
    """The connection test reached no answer, or the provider refused: the message is for people."""


@dataclass(frozen=True)
class Setting:
    """One setting a connector reads from `Integration.config`, declared once for the connector and
    the setup form alike.

    `kind` is text, secret, url, email or minutes. Secrets are write-only in the admin and hidden
    by the API. `for_pull` marks a credential a pull sync cannot run without; `for_connection`
    whether a change to it means the connection must be tested again (a webhook signing secret or
    the sync interval does not). `check` raises ValueError with a message for people.
    """

    key: str
    label: str
    kind: str = "text"
    required: bool = False
    help: str = ""
    placeholder: str = ""
    for_pull: bool = False
    for_connection: bool = True
    check: Callable[[str], None] | None = None

    @property
    def is_secret(self) -> bool:
        return self.kind == "secret"


def api_base_setting(default: str) -> Setting:
    return Setting(
        "api_base",
        "API base URL",
        kind="url",
        help=f"Leave blank for {default}. Set it only for a proxy or a test server.",
        placeholder=default,
    )


SYNC_INTERVAL = Setting(
    "sync_interval_minutes",
    "Sync every (minutes)",
    kind="minutes",
    help="How often changes are pulled. Leave blank for the server's default.",
    for_connection=False,
)


@dataclass
class Delivery:
    """A webhook request as the connector needs it: the raw body, headers and the signed URL."""

    body: bytes
    headers: Mapping[str, str]  # lower-case names
    method: str
    url: str


@dataclass
class IncomingEvent:
    """One provider event inside a delivery (HubSpot batches up to 100 per request)."""

    event_id: str
    event_type: str
    body: str


@dataclass
class Page:
    """One page of a pull sync: its events, how many objects were fetched, the cursor after it."""

    events: list[CanonicalEvent]
    fetched: int
    cursor: dict[str, Any] = field(default_factory=dict)


def secret_value(value: Any) -> str:
    """A configured secret, or `env:NAME` to keep it in the environment instead of the database."""
    text = str(value or "")
    if text.startswith("env:"):
        return os.environ.get(text[4:], "")
    return text


def _is_epoch_text(value: str) -> bool:
    # str.isdigit() also accepts superscripts ('¹²³'), which int() and float() refuse.
    return value.isascii() and value.isdigit()


def parse_time(value: Any) -> dt.datetime | None:
    """Epoch seconds or milliseconds, or ISO 8601, as an aware datetime. ValueError otherwise,
    also for a number beyond the calendar (which datetime reports as OverflowError or OSError)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and _is_epoch_text(value.removeprefix("-"))):
            number = float(value)
            if number > 1e11:  # milliseconds
                number /= 1000
            return dt.datetime.fromtimestamp(number, tz=dt.UTC)
    except (OverflowError, OSError) as error:
        raise ValueError(f"{value!r} is out of range for a time.") from error
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)


def _check_skew(skew: float) -> None:
    tolerance = settings.WEBHOOK_TOLERANCE_SECONDS
    if skew > tolerance:
        raise SignatureError(f"Timestamp is {skew:.0f} s away from our clock (tolerance {tolerance} s).", "clock_skew")


def check_tolerance(timestamp: dt.datetime) -> None:
    """Reject a signed timestamp more than the tolerance away from now, in either direction."""
    _check_skew(abs((timezone.now() - timestamp).total_seconds()))


def check_epoch_tolerance(value: str, *, header: str, milliseconds: bool = False) -> None:
    """Check a signed epoch timestamp, as the header's text, against our clock.

    The distance is computed in whole numbers, never through a datetime: a far-off value (sixteen
    nines of milliseconds) is clock skew like any other rather than an overflow, and anything but
    ASCII digits is refused like a bad signature.
    """
    unit = 1000 if milliseconds else 1
    if not _is_epoch_text(value) or len(value) > 30:
        raise SignatureError(f"{header} must be epoch {'milliseconds' if milliseconds else 'seconds'}.")
    now = int(timezone.now().timestamp() * unit)
    _check_skew(abs(now - int(value)) / unit)


def body_hash(body: bytes | str) -> str:
    raw = body.encode() if isinstance(body, str) else body
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def loads(body: bytes | str) -> Any:
    """The body as JSON. Only UTF-8 is accepted (json.loads would also sniff UTF-16/32, which we
    could not store as text), and nesting too deep for the parser is refused, not a crash."""
    try:
        return json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise SignatureError("The body is not UTF-8 JSON.", "invalid_payload") from error


def without_nul(value: Any) -> Any:
    """`value` with NUL characters removed from every string, keys included.

    JSON may carry `\\u0000`, PostgreSQL text and JSONB cannot store it; the pipeline writes
    payload strings into both, so they are cleaned once, right after parsing.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [without_nul(inner) for inner in value]
    return value


class Connector:
    """A provider. Subclasses set `provider` and implement the halves they have."""

    provider: ClassVar[str] = ""
    label: ClassVar[str] = ""
    type: ClassVar[str] = Integration.Type.OTHER
    # What this connector reads from `config`: the setup form is built from it.
    settings_schema: ClassVar[tuple[Setting, ...]] = ()
    # Config keys a pull sync cannot authenticate without (checked before a run is opened),
    # derived from the schema's `for_pull` settings.
    pull_credentials: ClassVar[tuple[str, ...]] = ()
    # How to point the provider's webhooks at us and where its signing secret goes (push half).
    webhook_instructions: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.pull_credentials = tuple(s.key for s in cls.settings_schema if s.for_pull)

    @classmethod
    def settings_errors(cls, config: dict[str, Any]) -> dict[str, str]:
        """Errors no single setting shows, by the setting to show them on (config as it would be saved)."""
        return {}

    def __init__(self, integration: Integration) -> None:
        self.integration = integration
        self.config: dict[str, Any] = integration.config or {}

    def secrets(self, key: str = "signing_secret") -> list[str]:
        """The active signing secrets: `<key>` plus `<key>s` (a list, for rotation)."""
        values = [self.config.get(key), *(self.config.get(f"{key}s") or [])]
        return [s for s in (secret_value(v) for v in values) if s]

    # Push half ------------------------------------------------------------------------------
    def verify(self, delivery: Delivery) -> list[IncomingEvent]:
        """Check the signature on the raw body; return the events it carries. Raise SignatureError."""
        raise NotSupported(f"{self.provider} has no webhooks")

    def transform(self, event_type: str, payload: Any) -> list[CanonicalEvent]:
        """A stored webhook event as canonical events (may call the provider's API for current state)."""
        raise NotSupported(f"{self.provider} has no webhooks")

    # Pull half ------------------------------------------------------------------------------
    def pull(self, cursor: dict[str, Any]) -> Iterator[Page]:
        raise NotSupported(f"{self.provider} has no pull API")

    def missing_credentials(self) -> list[str]:
        """The `pull_credentials` with no value (an `env:` reference to an unset variable counts)."""
        return [key for key in self.pull_credentials if not secret_value(self.config.get(key))]

    @property
    def can_pull(self) -> bool:
        return type(self).pull is not Connector.pull

    @property
    def can_push(self) -> bool:
        return type(self).verify is not Connector.verify

    # Connection test ------------------------------------------------------------------------
    @property
    def can_check(self) -> bool:
        return type(self).check_connection is not Connector.check_connection

    def check_connection(self) -> str:
        """One cheap authenticated call with the configured credentials; what it proved, for people.
        Raise ConnectionFailed with the reason (the provider's own words where it gave some)."""
        raise NotSupported(f"{self.provider} has no API to call")

    def _call_for_check(self, call: Callable[[], Any], base_url: str) -> Any:
        """Run `call` (one request, no retries) and turn what can go wrong into a plain sentence
        that never repeats a configured secret."""
        missing = [s.label for s in self.settings_schema if s.key in self.missing_credentials()]
        if missing:
            raise ConnectionFailed(f"No {', '.join(missing).lower()} entered.")
        name = self.label or self.provider
        try:
            return call()
        except PermanentError as error:
            if error.status in (401, 403):
                reason = f"{name} refused the credentials (HTTP {error.status})"
            elif error.status == 404:
                reason = f"{name} answered “not found” (HTTP 404) at {base_url}: check the address"
            else:
                reason = f"{name} refused the request (HTTP {error.status or '?'})"
            message = f"{reason}: {error.detail}" if error.detail else f"{reason}."
            raise ConnectionFailed(self._redact(message)) from None
        except TransientError as error:
            raise ConnectionFailed(self._redact(f"Could not get an answer from {base_url} ({error}).")) from None
        except httpx.HTTPError as error:
            raise ConnectionFailed(self._redact(f"Could not reach {base_url}: {error}.")) from None

    def _redact(self, text: str) -> str:
        for setting in self.settings_schema:
            value = secret_value(self.config.get(setting.key)) if setting.is_secret else ""
            if len(value) >= 4:
                text = text.replace(value, "••••")
        return text


_registry: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    _registry[cls.provider] = cls
    return cls


def providers() -> list[str]:
    return sorted(_registry)


def connector_class(provider: str) -> type[Connector] | None:
    return _registry.get(provider)


def connector_for(integration: Integration) -> Connector:
    cls = _registry.get(integration.provider)
    if cls is None:
        raise NotSupported(f"Unknown provider {integration.provider!r} (config.provider).")
    return cls(integration)
