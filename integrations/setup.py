"""Writes and checks for setting an integration up by hand (the admin's setup form).

The status is never typed in: a new integration, or one whose credentials changed, is
disconnected until a connection test of exactly those credentials succeeded (the form carries
the test's signed token) or a sync succeeds (`services._sync_finish`); a provider that only sends
us events is connected by the first signed delivery the drain takes in
(`services._events_received_record`).
"""

import json
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.db import transaction
from django.utils.crypto import constant_time_compare, salted_hmac

from integrations import services
from integrations.connectors.base import ConnectionFailed, NotSupported, connector_class, connector_for
from integrations.models import Integration

_SALT = "integrations.connection-test"
# A test older than this no longer vouches for the credentials when the form is saved.
TEST_VALID_SECONDS = 3600


@dataclass(frozen=True)
class ConnectionResult:
    """What a connection test found, in words for people; `token` vouches for the tested settings."""

    ok: bool
    message: str
    token: str = ""


def connection_fingerprint(*, provider: str, config: dict[str, Any]) -> str:
    """A keyed hash of the settings a connection depends on (never the values themselves)."""
    cls = connector_class(provider)
    keys = sorted(s.key for s in cls.settings_schema if s.for_connection) if cls else []
    payload = json.dumps({"provider": provider, **{key: config.get(key) for key in keys}}, sort_keys=True, default=str)
    return salted_hmac(_SALT, payload).hexdigest()


def connection_test(*, provider: str, config: dict[str, Any]) -> ConnectionResult:
    """Call the provider once with `config`'s credentials, saving nothing and syncing nothing."""
    integration = Integration(name="connection test", config={**config, "provider": provider})
    try:
        connector = connector_for(integration)
    except NotSupported as error:
        return ConnectionResult(ok=False, message=str(error))
    if not connector.can_check:
        return ConnectionResult(
            ok=False,
            message=f"{connector.label} sends its events to us and has no API to test: "
            "send a test event from it and look for it under Webhook events.",
        )
    try:
        message = connector.check_connection()
    except ConnectionFailed as error:
        return ConnectionResult(ok=False, message=str(error))
    token = signing.dumps(connection_fingerprint(provider=provider, config=config), salt=_SALT)
    return ConnectionResult(ok=True, message=message, token=token)


def connection_verified(*, token: str, provider: str, config: dict[str, Any]) -> bool:
    """Whether `token` is a recent successful test of exactly these connection settings."""
    if not token:
        return False
    try:
        tested = signing.loads(token, salt=_SALT, max_age=TEST_VALID_SECONDS)
    except signing.BadSignature:
        return False
    return isinstance(tested, str) and constant_time_compare(
        tested, connection_fingerprint(provider=provider, config=config)
    )


def integration_save(
    *, integration: Integration, previous_config: dict[str, Any] | None, verified: bool
) -> Integration:
    """Save an integration set up by a person, its status derived, and install its sync schedule.

    `previous_config` is None for a new one; `verified` says a connection test of the settings
    being saved succeeded.
    """
    if verified:
        integration.status = Integration.Status.CONNECTED
    elif previous_config is None or connection_fingerprint(
        provider=str(previous_config.get("provider", "")).lower(), config=previous_config
    ) != connection_fingerprint(provider=integration.provider, config=integration.config or {}):
        integration.status = Integration.Status.DISCONNECTED
    with transaction.atomic():
        integration.save()
        services.integration_schedule_sync(integration=integration)
    return integration
