"""Sentry error tracking, initialised from settings when SENTRY_DSN is set."""

from typing import Any

from monitoring.context import request_id_var
from monitoring.logs import redact


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def before_send(event: dict, hint: dict) -> dict:
    """Tag the request id; scrub tokens and secrets the SDK's own denylist would miss."""
    request_id = request_id_var.get()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    return _scrub(event)


def init_sentry(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    # The SDK loads only when error tracking is on (settings call this when SENTRY_DSN is set).
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,  # no cookies, no Authorization header, no user e-mail
        traces_sample_rate=traces_sample_rate,
        before_send=before_send,
    )
