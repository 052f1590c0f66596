"""Admin for integrations. Secret values in `config` are never rendered, for any role.

Admins and managers set an integration up with its provider's typed form (`integrations.forms`),
secrets write-only; viewers see the settings read-only with secret-looking keys (see
`integrations.selectors.SECRET_KEY_PATTERN`) left out; CSMs do not open the page.
"""

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timesince import timesince

from core.auth.roles import Role, role_of
from core.exceptions import ConflictError, NotFoundError
from customers.admin_scoping import EngineRowsAdmin, PortfolioScopedAdmin
from integrations import services, setup
from integrations.asgi import webhook_path
from integrations.connectors.base import connector_class
from integrations.forms import IntegrationSetupForm, clear_field_name, integration_form, provider_choices
from integrations.models import Integration, SyncRun, WebhookEvent
from integrations.selectors import SECRET_KEY_PATTERN, integration_list, public_config, receives_pushes_only


def _is_secret(key: Any) -> bool:
    return bool(SECRET_KEY_PATTERN.search(str(key)))


def secret_paths(config: Any, prefix: str = "") -> list[str]:
    """Where secrets are stored (key paths only, never values), so an admin knows what is set."""
    paths: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if _is_secret(key):
                paths.extend([path] if value not in (None, "", [], {}) else [])  # an empty one is not set
            else:
                paths.extend(secret_paths(value, path))
    elif isinstance(config, list):
        for index, item in enumerate(config):
            paths.extend(secret_paths(item, f"{prefix}[{index}]"))
    return paths


@admin.register(Integration)
class IntegrationAdmin(PortfolioScopedAdmin):
    """Integrations set up by typed forms, one per provider (`integrations.forms`).

    The add page first asks for the provider; the form then holds that connector's settings,
    secrets write-only. The page tests the connection (through the connector, saving nothing) and
    shows the webhook URL to give the provider. The status is derived, never typed in.
    """

    list_display = ("name", "provider_name", "state", "last_synced", "attention", "reason")
    list_filter = ("status", "type")
    search_fields = ("name",)
    readonly_fields = (
        "id",
        "created_at",
        "type",
        "state",
        "last_sync_at",
        "last_event_at",
        "public_settings",
        "other_settings",
        "stored_secrets",
        "cursor",
        "last_error",
        "last_error_at",
        "consecutive_failures",
    )
    actions = ["sync_now"]
    change_form_template = "admin/integrations/integration/setup_form.html"

    class Media:
        css = {"all": ["workspace/workspace.css", "integrations/setup.css"]}
        js = ["integrations/setup.js"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The health columns come annotated in the same query as the rows.
        return integration_list().filter(pk__in=super().get_queryset(request).values("pk"))

    def get_urls(self) -> list[URLPattern]:
        test = self.admin_site.admin_view(self.test_connection_view)
        return [
            path("test-connection/", test, name="integrations_integration_test_connection"),
            path("<path:object_id>/test-connection/", test, name="integrations_integration_test_connection"),
            *super().get_urls(),
        ]

    # Changelist: few, short columns, so the list fits a 1400 px window beside the filters. -----
    @admin.display(description="Provider")
    def provider_name(self, obj: Integration) -> str:
        cls = connector_class(obj.provider)
        return cls.label.split(" (")[0] if cls else "not chosen"

    @admin.display(description="Status", ordering="status")
    def state(self, obj: Integration) -> str:
        label, tone = STATUS_LABELS.get(obj.status, (obj.status, "low"))
        if receives_pushes_only(obj):
            # Its connection is proved by the signed events it sends, not by a test or a sync.
            if obj.status == Integration.Status.CONNECTED and obj.last_event_at:
                when = date_format(timezone.localtime(obj.last_event_at), "j M Y H:i")
                label = f"Receiving events, last at {when}"
            elif obj.status == Integration.Status.DISCONNECTED and obj.last_event_at is None:
                label = "Not connected: no signed event received yet"
        return format_html('<span class="cs-pill cs-int-{}">{}</span>', tone, label)

    @admin.display(description="Last sync", ordering="last_sync_at")
    def last_synced(self, obj: Integration) -> str:
        if receives_pushes_only(obj):
            return f"event {timesince(obj.last_event_at).split(',')[0]} ago" if obj.last_event_at else "no events yet"
        if obj.last_sync_at is None:
            return "never"
        return f"{timesince(obj.last_sync_at).split(',')[0]} ago"

    @admin.display(description="Needs attention")
    def attention(self, obj: Any) -> str:  # a row of integration_list(), with its health counts
        parts = []
        if obj.consecutive_failures:
            parts.append(f"{obj.consecutive_failures} failed in a row")
        if obj.failed_runs_24h:
            parts.append(f"{obj.failed_runs_24h} failed runs (24 h)")
        if obj.webhook_backlog:
            parts.append(f"{obj.webhook_backlog} webhooks waiting")
        if obj.dead_letters:
            parts.append(f"{obj.dead_letters} dead letters")
        return " · ".join(parts) or "—"

    @admin.display(description="Reason")
    def reason(self, obj: Integration) -> str:
        if not obj.last_error:
            return "—"
        short = obj.last_error if len(obj.last_error) <= 120 else obj.last_error[:119] + "…"
        return format_html('<span title="{}">{}</span>', obj.last_error, short)

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

    # The setup form ---------------------------------------------------------------------------
    def _editable(self, request: HttpRequest, obj: Model | None) -> bool:
        return self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)

    def _provider(self, request: HttpRequest, obj: Model | None) -> str:
        if isinstance(obj, Integration) and obj.pk:
            return obj.provider
        return str(request.POST.get("provider") or request.GET.get("provider") or "").lower()

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        if self._editable(request, obj):
            kwargs["form"] = integration_form(self._provider(request, obj))
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> list[tuple[str | None, dict]]:
        status = (
            "Status",
            {
                "fields": (
                    "state",
                    "last_sync_at",
                    "last_event_at",
                    "consecutive_failures",
                    "last_error",
                    "last_error_at",
                )
            },
        )
        record = ("Record", {"fields": ("id", "type", "created_at", "cursor")})
        if not self._editable(request, obj):
            return [
                (None, {"fields": ("name",)}),
                ("Settings", {"fields": ("public_settings", "stored_secrets")}),
                status,
                record,
            ]
        cls = connector_class(self._provider(request, obj))
        stored = dict(obj.config or {}) if isinstance(obj, Integration) else {}
        if cls is None:
            fieldsets: list[tuple[str | None, dict]] = [(None, {"fields": ("name", "provider", "connection_check")})]
        else:
            fields: list[str] = []
            for setting in cls.settings_schema:
                fields.append(setting.key)
                if setting.is_secret and stored.get(setting.key):
                    fields.append(clear_field_name(setting.key))
            fieldsets = [
                (None, {"fields": ("name", "connection_check")}),
                (f"{cls.label} settings", {"fields": fields}),
            ]
        declared = {s.key for s in cls.settings_schema} if cls else set()
        if set(stored) - declared - {"provider"}:
            fieldsets.append(("Other stored settings", {"fields": ("other_settings",)}))
        if obj is not None:
            fieldsets += [status, record]
        return fieldsets

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        provider = self._provider(request, None)
        if connector_class(provider) is None and self.has_add_permission(request):
            # First the provider: the form is that provider's.
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Add an integration",
                "providers": [
                    {"name": name, "label": label, "type": connector_class(name).type}  # type: ignore[union-attr]
                    for name, label in provider_choices()
                ],
            }
            return TemplateResponse(request, "admin/integrations/integration/choose_provider.html", context)
        return super().add_view(request, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Model | None = None,
    ) -> HttpResponse:
        context.update(self._setup_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _setup_context(self, request: HttpRequest, obj: Model | None) -> dict[str, Any]:
        """The connection panel: the test button, the webhook URL and how to sign."""
        cls = connector_class(self._provider(request, obj))
        if cls is None:
            return {}
        connector = cls(obj if isinstance(obj, Integration) else Integration())
        args = [obj.pk] if obj is not None else []
        webhook_url = ""
        if connector.can_push and obj is not None:
            path_ = webhook_path(provider=cls.provider, integration_id=obj.pk)
            webhook_url = str(connector.config.get("webhook_url") or request.build_absolute_uri(path_))
        return {
            "setup": {
                "label": cls.label,
                "provider": cls.provider,
                "editable": self._editable(request, obj),
                "can_check": connector.can_check,
                "test_url": reverse("admin:integrations_integration_test_connection", args=args)
                + ("" if obj is not None else f"?provider={cls.provider}"),
                "pushes": connector.can_push,
                "webhook_url": webhook_url,
                "instructions": cls.webhook_instructions,
            }
        }

    def test_connection_view(self, request: HttpRequest, object_id: str | None = None) -> JsonResponse:
        """Test the settings in the posted form (stored secrets where left blank), saving nothing."""
        # Outside the user's scope (every integration, for a CSM) an object is a 404, as elsewhere.
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if not self._opens_for(request) or not self._editable(request, obj):
            raise PermissionDenied
        if request.method != "POST":
            return JsonResponse({"ok": False, "message": "Send the form with POST."}, status=405)
        provider = self._provider(request, obj)
        form_class = integration_form(provider)
        if not issubclass(form_class, IntegrationSetupForm):
            return JsonResponse({"ok": False, "message": "Choose a provider and save first."}, status=400)
        form = form_class(data=request.POST, instance=obj or Integration())
        form.is_valid()
        if not form.settings_valid or form.config is None:
            errors = {key: [str(e) for e in form.errors[key]] for key in form.errors if key != "name"}
            return JsonResponse(
                {"ok": False, "message": "Correct the settings marked below first.", "errors": errors}, status=400
            )
        result = setup.connection_test(provider=provider, config=form.config)
        return JsonResponse({"ok": result.ok, "message": result.message, "token": result.token})

    def save_model(self, request: HttpRequest, obj: Integration, form: Any, change: bool) -> None:
        setup.integration_save(
            integration=obj,
            previous_config=getattr(form, "stored_config", None) if change else None,
            verified=getattr(form, "verified", False),
        )

    @admin.display(description="Settings")
    def public_settings(self, obj: Integration) -> str:
        return format_html("<pre>{}</pre>", json.dumps(public_config(obj.config), indent=2, sort_keys=True))

    @admin.display(description="Kept as they are")
    def other_settings(self, obj: Integration) -> str:
        """What the form does not show: keys the provider's connector does not declare, secrets hidden."""
        cls = connector_class(obj.provider)
        declared = {s.key for s in cls.settings_schema} if cls else set()
        rest = {key: value for key, value in (obj.config or {}).items() if key not in declared | {"provider"}}
        secrets = secret_paths(rest)
        shown = json.dumps(public_config(rest), indent=2, sort_keys=True)
        hidden = f"Secrets: {', '.join(secrets)} (values hidden)" if secrets else ""
        return format_html("<pre>{}</pre>{}", shown, hidden)

    @admin.display(description="Stored secrets")
    def stored_secrets(self, obj: Integration) -> str:
        paths = secret_paths(obj.config)
        return ", ".join(paths) + " (values hidden)" if paths else "—"


STATUS_LABELS: dict[str, tuple[str, str]] = {
    Integration.Status.CONNECTED: ("Connected", "ok"),
    Integration.Status.DISCONNECTED: ("Not connected", "off"),
    Integration.Status.ERROR: ("Error", "error"),
    Integration.Status.SYNCING: ("Syncing", "busy"),
}


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
