"""Reads about integrations. Secrets in `config` never leave the server.

`integration_health()` is the read monitoring uses for sync lag, errors, webhook
backlog and dead letters.
"""

import datetime as dt
import re
from typing import Any

from django.core.cache import cache
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.connectors.base import connector_class, providers
from integrations.models import Integration, SyncRun, WebhookEvent

SECRET_KEY_PATTERN = re.compile(
    r"password|secret|token|hash|api_?key|write_?key|signing|private|credential|dsn", re.IGNORECASE
)
# Why a delivery was refused, as counted for /metrics (`SignatureError.code`; anything else is "other").
REJECTION_REASONS = ("clock_skew", "invalid_signature", "invalid_payload", "other")


def rejection_key(provider: str, reason: str) -> str:
    return f"integrations:webhook-rejections:{provider}:{reason}"


def _count(queryset: QuerySet) -> Coalesce:
    return Coalesce(
        Subquery(queryset.order_by().values("integration_id").annotate(n=Count("id")).values("n")[:1]),
        0,
        output_field=IntegerField(),
    )


def integration_list() -> QuerySet[Integration]:
    """Integrations with their health, in one query (no per-row reads)."""
    day_ago = timezone.now() - dt.timedelta(days=1)
    mine = {"integration_id": OuterRef("pk")}
    return Integration.objects.order_by("id").annotate(
        failed_runs_24h=_count(SyncRun.objects.filter(**mine, status=SyncRun.Status.FAILED, started_at__gte=day_ago)),
        webhook_backlog=_count(
            WebhookEvent.objects.filter(**mine, status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.RETRYING])
        ),
        dead_letters=_count(WebhookEvent.objects.filter(**mine, status=WebhookEvent.Status.DEAD)),
        oldest_pending_at=Subquery(
            WebhookEvent.objects.filter(**mine, status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.RETRYING])
            .order_by("received_at")
            .values("received_at")[:1]
        ),
    )


def integration_health() -> list[dict[str, Any]]:
    """One row per integration: status, lag since the last successful sync, errors, webhook backlog."""
    now = timezone.now()
    rows = []
    integration: Any  # a row with the counts integration_list() annotates
    for integration in integration_list():
        rows.append(
            {
                "id": integration.pk,
                "name": integration.name,
                "provider": integration.provider,
                "status": integration.status,
                "last_sync_at": integration.last_sync_at,
                "sync_lag_seconds": (now - integration.last_sync_at).total_seconds()
                if integration.last_sync_at
                else None,
                "consecutive_failures": integration.consecutive_failures,
                "failed_runs_24h": integration.failed_runs_24h,
                "last_error": integration.last_error,
                "last_error_at": integration.last_error_at,
                "webhook_backlog": integration.webhook_backlog,
                "webhook_oldest_pending_seconds": (now - integration.oldest_pending_at).total_seconds()
                if integration.oldest_pending_at
                else None,
                "webhook_dead_letters": integration.dead_letters,
            }
        )
    return rows


def receives_pushes_only(integration: Integration) -> bool:
    """Whether the integration's provider only sends us events (no API to pull from or test), so
    that a verified delivery is the only proof it works (Segment, the generic webhook)."""
    cls = connector_class(integration.provider)
    if cls is None:
        return False
    connector = cls(integration)
    return connector.can_push and not connector.can_pull and not connector.can_check


def webhook_dead_letters() -> QuerySet[WebhookEvent]:
    return WebhookEvent.objects.filter(status=WebhookEvent.Status.DEAD).order_by("-received_at")


def public_config(config: Any) -> Any:
    """`config` without any key that looks like a secret, at any depth."""
    if isinstance(config, dict):
        return {key: public_config(value) for key, value in config.items() if not SECRET_KEY_PATTERN.search(str(key))}
    if isinstance(config, list):
        return [public_config(item) for item in config]
    return config


def webhook_rejection_counts() -> dict[tuple[str, str], int]:
    """Refused deliveries since the cache was last emptied, per (provider, reason). One cache read."""
    keys = {rejection_key(p, r): (p, r) for p in providers() for r in REJECTION_REASONS}
    found = cache.get_many(list(keys))
    return {pair: int(found.get(key) or 0) for key, pair in keys.items()}
