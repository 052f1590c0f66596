"""Admin for alerts and notifications.

A CSM sees the alerts on their own customers (book-wide alerts are for managers), their own
preferences and their own delivery log; managers and admins edit the noise-control settings.
"""

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from alerts.models import Alert, NotificationDelivery, NotificationPreference, NotificationSettings
from alerts.notifications.errors import UnsafeWebhookURL
from alerts.notifications.webhooks import webhook_target
from alerts.services import alert_acknowledge, alert_set_read, alert_snooze
from churnshield.admin_scoping import PortfolioScopedAdmin, is_csm
from churnshield.exceptions import ConflictError, NotFoundError


@admin.register(Alert)
class AlertAdmin(PortfolioScopedAdmin):
    customer_path = "customer__owner"
    list_display = ("title", "severity", "status", "source", "customer", "owner", "read", "created_at")
    list_filter = ("status", "read", "severity", "source")
    search_fields = ("title", "message", "customer__name", "customer__company")
    date_hierarchy = "created_at"
    list_select_related = ("customer", "owner")
    autocomplete_fields = ("customer",)
    fields = (
        "id",
        "title",
        "severity",
        "source",
        "customer",
        "owner",
        "grouping_key",
        "message",
        "read",
        "status",
        "acknowledged_at",
        "acknowledged_by",
        "snoozed_until",
        "resolved_at",
        "created_at",
    )
    readonly_fields = (
        "id",
        "source",
        "owner",
        "grouping_key",
        "status",
        "acknowledged_at",
        "acknowledged_by",
        "snoozed_until",
        "resolved_at",
        "created_at",
    )
    actions = ("mark_read", "mark_unread", "acknowledge", "snooze_1h", "snooze_24h")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        return super().get_queryset(request).select_related("customer", "owner")

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> tuple[str, ...]:
        # Alerts are raised by the system: a CSM may only mark them read, not rewrite or move them.
        if is_csm(request):
            return tuple(name for name in self.fields if name != "read")
        return tuple(super().get_readonly_fields(request, obj))

    def _set_read(self, request: HttpRequest, queryset: QuerySet[Alert], read: bool) -> int:
        ids = list(queryset.values_list("pk", flat=True))
        return alert_set_read(user=request.user, alert_ids=ids, read=read)

    @admin.action(description="Mark selected alerts read", permissions=("change",))
    def mark_read(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        updated = self._set_read(request, queryset, True)
        self.message_user(request, f"{updated} alert(s) marked read.", messages.SUCCESS)

    @admin.action(description="Mark selected alerts unread", permissions=("change",))
    def mark_unread(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        updated = self._set_read(request, queryset, False)
        self.message_user(request, f"{updated} alert(s) marked unread.", messages.SUCCESS)

    def _each(self, request: HttpRequest, queryset: QuerySet[Alert], verb: str, change) -> None:
        done = skipped = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                change(pk)
                done += 1
            except (ConflictError, NotFoundError):
                skipped += 1
        note = f" ({skipped} resolved or out of reach, left alone)" if skipped else ""
        self.message_user(request, f"{done} alert(s) {verb}{note}.", messages.SUCCESS)

    @admin.action(description="Acknowledge selected alerts", permissions=("change",))
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._each(request, queryset, "acknowledged", lambda pk: alert_acknowledge(user=request.user, alert_id=pk))

    def _snooze(self, request: HttpRequest, queryset: QuerySet[Alert], hours: int) -> None:
        until = timezone.now() + dt.timedelta(hours=hours)
        self._each(
            request,
            queryset,
            f"snoozed for {hours} h",
            lambda pk: alert_snooze(user=request.user, alert_id=pk, until=until),
        )

    @admin.action(description="Snooze selected alerts for 1 hour", permissions=("change",))
    def snooze_1h(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._snooze(request, queryset, 1)

    @admin.action(description="Snooze selected alerts for 24 hours", permissions=("change",))
    def snooze_24h(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._snooze(request, queryset, 24)


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(PortfolioScopedAdmin):
    """The singleton: one row, created on first save, never deleted."""

    list_display = ("__str__", "group_wait_seconds", "group_interval_minutes", "throttle_limit", "digest_hour")
    readonly_fields = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not NotificationSettings.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: NotificationSettings, form: object, change: bool) -> None:
        obj.pk = 1
        super().save_model(request, obj, form, change)


class NotificationPreferenceForm(forms.ModelForm):
    """Webhook URLs pass the SSRF guard before they are stored (and again at every send)."""

    class Meta:
        model = NotificationPreference
        fields = (
            "user",
            "email_enabled",
            "slack_webhook_url",
            "teams_webhook_url",
            "in_app_enabled",
            "min_severity",
            "time_zone",
            "quiet_hours_start",
            "quiet_hours_end",
            "digest_enabled",
        )

    def _webhook(self, name: str) -> str:
        url = self.cleaned_data.get(name) or ""
        if url:
            try:
                webhook_target(url)
            except UnsafeWebhookURL as exc:
                raise forms.ValidationError(str(exc)) from exc
        return url

    def clean_slack_webhook_url(self) -> str:
        return self._webhook("slack_webhook_url")

    def clean_teams_webhook_url(self) -> str:
        return self._webhook("teams_webhook_url")


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(PortfolioScopedAdmin):
    customer_path = "user"  # a CSM sees and edits only their own preferences
    list_display = ("user", "email_enabled", "min_severity", "digest_enabled", "time_zone", "updated_at")
    list_select_related = ("user",)
    list_filter = ("digest_enabled", "min_severity")
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ("user",)

    form = NotificationPreferenceForm

    def save_model(self, request: HttpRequest, obj: NotificationPreference, form: object, change: bool) -> None:
        if is_csm(request):
            obj.user = request.user
        super().save_model(request, obj, form, change)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(PortfolioScopedAdmin):
    """The delivery log: read-only, a CSM sees their own."""

    customer_path = "recipient"
    list_display = ("id", "channel", "recipient", "status", "attempts", "alert", "due_at", "sent_at", "last_error")
    list_filter = ("status", "channel")
    list_select_related = ("recipient", "alert")
    search_fields = ("recipient__username", "grouping_key", "last_error")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
