"""Admin for integrations. Secret values in `config` are never rendered, for any role.

Admins edit a redacted copy of `config`: secret-looking keys (see
`integrations.selectors.SECRET_KEY_PATTERN`) are left out of what is shown and kept on save unless
the admin enters a new value (or `null` to remove one). Other roles see a read-only redacted view.
"""

import copy
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.timesince import timesince

from churnshield.admin_scoping import EngineRowsAdmin, PortfolioScopedAdmin, is_admin_role
from churnshield.auth.roles import Role, role_of
from churnshield.exceptions import ConflictError, NotFoundError
from integrations import services
from integrations.models import Integration, SyncRun, WebhookEvent
from integrations.selectors import SECRET_KEY_PATTERN, integration_list, public_config


def _is_secret(key: Any) -> bool:
    return bool(SECRET_KEY_PATTERN.search(str(key)))


def secret_paths(config: Any, prefix: str = "") -> list[str]:
    """Where secrets are stored (key paths only, never values), so an admin knows what is set."""
    paths: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.extend([path] if _is_secret(key) else secret_paths(value, path))
    elif isinstance(config, list):
        for index, item in enumerate(config):
            paths.extend(secret_paths(item, f"{prefix}[{index}]"))
    return paths


def merge_secrets(stored: Any, submitted: Any) -> Any:
    """`submitted` (edited from the redacted view) with the stored secrets it could not show put back.

    A secret key absent from `submitted` keeps its stored value; a secret key set to null is removed;
    any other submitted value wins. Lists are merged item by item when their length is unchanged.
    """
    if isinstance(stored, dict) and isinstance(submitted, dict):
        merged: dict[str, Any] = {}
        for key, value in submitted.items():
            if _is_secret(key) and value is None:
                continue
            merged[key] = merge_secrets(stored[key], value) if key in stored and not _is_secret(key) else value
        for key, value in stored.items():
            if key not in submitted and _is_secret(key):
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(stored, list) and isinstance(submitted, list) and len(stored) == len(submitted):
        return [merge_secrets(old, new) for old, new in zip(stored, submitted, strict=True)]
    return submitted


class IntegrationAdminForm(forms.ModelForm):
    """Shows `config` redacted and restores the hidden secrets when it is saved."""

    class Meta:
        model = Integration
        fields = ("name", "type", "status", "last_sync_at", "config")
        widgets = {"name": forms.TextInput(attrs={"size": 40})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stored_config = copy.deepcopy(self.instance.config) if self.instance.pk else {}
        if "config" in self.fields:
            self.initial["config"] = public_config(self._stored_config)
            self.fields["config"].help_text = (
                "Secret values (API keys, tokens, passwords…) are never shown. They are kept when you save; "
                "to replace one, enter the key with its new value; to remove one, set it to null, "
                'e.g. {"api_key": null}.'
            )

    def clean_config(self) -> Any:
        return merge_secrets(self._stored_config, self.cleaned_data.get("config"))


@admin.register(Integration)
class IntegrationAdmin(PortfolioScopedAdmin):
    form = IntegrationAdminForm
    list_display = (
        "name",
        "type",
        "provider_name",
        "status",
        "last_sync_at",
        "lag",
        "consecutive_failures",
        "failed_runs",
        "backlog",
        "dead",
        "last_error",
    )
    list_filter = ("type", "status")
    search_fields = ("name",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "id",
        "created_at",
        "public_settings",
        "stored_secrets",
        "cursor",
        "last_error",
        "last_error_at",
        "consecutive_failures",
    )
    actions = ["sync_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The health columns come annotated in the same query as the rows.
        return integration_list().filter(pk__in=super().get_queryset(request).values("pk"))

    @admin.display(description="Provider")
    def provider_name(self, obj: Integration) -> str:
        return obj.provider or "—"

    @admin.display(description="Lag")
    def lag(self, obj: Integration) -> str:
        if obj.last_sync_at is None:
            return "never synced"
        return timesince(obj.last_sync_at)

    @admin.display(description="Failed runs (24 h)")
    def failed_runs(self, obj: Integration) -> int:
        return obj.failed_runs_24h

    @admin.display(description="Webhook backlog")
    def backlog(self, obj: Integration) -> int:
        return obj.webhook_backlog

    @admin.display(description="Dead letters")
    def dead(self, obj: Integration) -> int:
        return obj.dead_letters

    @admin.action(description="Sync now")
    def sync_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        if role_of(request.user) not in {Role.ADMIN, Role.MANAGER}:
            self.message_user(request, "Only managers and admins may start a sync.", messages.ERROR)
            return
        for integration in queryset:
            try:
                run = services.sync_now(integration_id=integration.pk)
                self.message_user(request, f"{integration.name}: sync run {run.pk} started.")
            except (ConflictError, NotFoundError) as error:
                self.message_user(request, f"{integration.name}: {error}", messages.WARNING)

    def save_model(self, request: HttpRequest, obj: Integration, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.integration_schedule_sync(integration=obj)

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> list[tuple[str | None, dict]]:
        # The raw config (even redacted and editable) is for admins; everyone else gets a read-only view.
        if is_admin_role(request) and (obj is None or self.has_change_permission(request, obj)):
            settings_fields: tuple[str, ...] = ("config", "stored_secrets")
        else:
            settings_fields = ("public_settings", "stored_secrets")
        return [
            (None, {"fields": ("name", "type", "status", "last_sync_at")}),
            ("Settings", {"fields": settings_fields}),
            ("Health", {"fields": ("consecutive_failures", "last_error", "last_error_at", "cursor")}),
            ("Record", {"fields": ("id", "created_at")}),
        ]

    @admin.display(description="Settings")
    def public_settings(self, obj: Integration) -> str:
        return format_html("<pre>{}</pre>", json.dumps(public_config(obj.config), indent=2, sort_keys=True))

    @admin.display(description="Stored secrets")
    def stored_secrets(self, obj: Integration) -> str:
        paths = secret_paths(obj.config)
        return ", ".join(paths) + " (values hidden)" if paths else "—"


@admin.register(SyncRun)
class SyncRunAdmin(EngineRowsAdmin):
    list_display = (
        "id",
        "integration",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "fetched",
        "created",
        "updated",
        "failed",
        "error",
    )
    list_filter = ("status", "trigger", "integration")
    list_select_related = ("integration",)
    readonly_fields = list_display


@admin.register(WebhookEvent)
class WebhookEventAdmin(EngineRowsAdmin):
    """Stored webhooks, read-only; replaying dead letters is the action on them (managers, admins)."""

    list_display = (
        "id",
        "integration",
        "provider",
        "event_type",
        "event_id",
        "status",
        "attempts",
        "received_at",
        "processed_at",
        "last_error",
    )
    list_filter = ("status", "provider", "integration")
    list_select_related = ("integration",)
    search_fields = ("event_id",)
    readonly_fields = (
        "integration",
        "provider",
        "event_id",
        "event_type",
        "status",
        "attempts",
        "received_at",
        "next_attempt_at",
        "processed_at",
        "last_error",
        "body",
    )
    actions = ["replay"]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return role_of(request.user) in {Role.ADMIN, Role.MANAGER} and super().has_operate_permission(request)

    @admin.action(description="Replay dead-lettered events", permissions=["operate"])
    def replay(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = services.webhook_events_replay(event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} dead-lettered event(s) queued for processing again.")
