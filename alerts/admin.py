"""Admin for alerts and notifications.

A CSM sees the alerts on their own customers (book-wide alerts are for managers), their own
preferences and their own delivery log; managers and admins edit the noise-control settings.
"""

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from alerts.api.renderers import alert_bell_body
from alerts.models import Alert, NotificationDelivery, NotificationPreference, NotificationSettings
from alerts.notifications.errors import UnsafeWebhookURL
from alerts.notifications.webhooks import webhook_target
from alerts.selectors import alert_bell, preference_of
from alerts.services import (
    MAX_SNOOZE,
    SNOOZE_PRESETS,
    alert_acknowledge,
    alert_mark_read,
    alert_set_read,
    alert_snooze,
    snooze_preset_until,
)
from core.exceptions import ConflictError, InvalidInputError, NotFoundError, error_body
from customers.admin_scoping import EngineRowsAdmin, PortfolioScopedAdmin, is_csm


def _wants_json(request: HttpRequest) -> bool:
    """The bell's fetch() asks for JSON; the alert page's plain forms get a redirect back."""
    return "application/json" in request.headers.get("Accept", "")


def _time_zone(request: HttpRequest) -> ZoneInfo:
    """The browser's zone (sent by bell.js) so "tomorrow 9:00" is the user's morning; else the
    zone of their notification preferences."""
    for name in (request.POST.get("tz", ""), preference_of(user=request.user).time_zone):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _snooze_until(request: HttpRequest, zone: ZoneInfo) -> dt.datetime:
    """A preset, or `until`: an ISO instant (the bell sends one) or a local date-time field's
    value without an offset (the alert page), read in the user's zone."""
    until = request.POST.get("until", "").strip()
    if until:
        try:
            when = dt.datetime.fromisoformat(until.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError({"until": ["Enter a date and time, e.g. 2026-06-01T09:00."]}) from None
        return when if timezone.is_aware(when) else when.replace(tzinfo=zone)
    return snooze_preset_until(request.POST.get("preset", ""), now=timezone.now(), time_zone=zone.key)


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

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("bell/", view(self.bell_view), name=f"{info}_bell"),
            path("<path:object_id>/acknowledge/", view(self.acknowledge_view), name=f"{info}_acknowledge"),
            path("<path:object_id>/snooze/", view(self.snooze_view), name=f"{info}_snooze"),
            path("<path:object_id>/read/", view(self.read_view), name=f"{info}_read"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        # The acknowledge/snooze/read buttons above the form (templates/admin/alerts/alert/change_form.html).
        now = timezone.localtime(timezone.now(), _time_zone(request)).replace(second=0, microsecond=0, tzinfo=None)
        context = {
            "snooze_presets": SNOOZE_PRESETS.items(),
            "snooze_min": (now + dt.timedelta(minutes=1)).isoformat(timespec="minutes"),
            "snooze_max": (now + MAX_SNOOZE - dt.timedelta(minutes=1)).isoformat(timespec="minutes"),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def bell_view(self, request: HttpRequest) -> HttpResponse:
        """The bell's count (open alerts nobody read) and its newest alerts, as JSON."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        presets = [{"value": value, "label": label} for value, label in SNOOZE_PRESETS.items()]
        return JsonResponse({**alert_bell_body(alert_bell(user=request.user)), "snoozePresets": presets})

    def acknowledge_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def acknowledge(pk: int) -> tuple[Alert, str]:
            return alert_acknowledge(user=request.user, alert_id=pk), "acknowledged"

        return self._act(request, object_id, acknowledge)

    def snooze_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def snooze(pk: int) -> tuple[Alert, str]:
            zone = _time_zone(request)
            alert = alert_snooze(user=request.user, alert_id=pk, until=_snooze_until(request, zone))
            return alert, f"snoozed until {timezone.localtime(alert.snoozed_until, zone):%a %d %b %H:%M} ({zone.key})"

        return self._act(request, object_id, snooze)

    def read_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def mark(pk: int) -> tuple[Alert, str]:
            if request.POST.get("read", "1") != "0":
                return alert_mark_read(user=request.user, alert_id=pk), "marked read"
            alert_set_read(user=request.user, alert_ids=[pk], read=False)
            return Alert.objects.get(pk=pk), "marked unread"

        return self._act(request, object_id, mark)

    def _act(self, request: HttpRequest, object_id: str, change: Callable[[int], tuple[Alert, str]]) -> HttpResponse:
        """One alert, by POST: the same scope as its change page (404 outside it, before the method
        is looked at, so a GET tells nothing either); writing needs a writing role."""
        obj = self.get_object(request, unquote(object_id))
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        try:
            alert, done = change(obj.pk)
        except InvalidInputError as exc:
            return self._refused(request, obj, 400, "invalid", exc.errors)
        except ConflictError as exc:
            return self._refused(request, obj, 409, "conflict", {}, str(exc))
        except NotFoundError:
            return self._refused(request, obj, 404, "not_found", {}, "Alert not found.")
        if _wants_json(request):
            return JsonResponse(
                {
                    "id": alert.pk,
                    "status": alert.status,
                    "read": alert.read,
                    "snoozedUntil": alert.snoozed_until.isoformat() if alert.snoozed_until else None,
                    "bell": alert_bell_body(alert_bell(user=request.user)),
                }
            )
        self.message_user(request, f"Alert {done}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:alerts_alert_change", args=[obj.pk]))

    def _refused(
        self, request: HttpRequest, obj: Alert, status: int, code: str, errors: dict[str, list[str]], message: str = ""
    ) -> HttpResponse:
        message = message or " ".join(m for msgs in errors.values() for m in msgs)
        if _wants_json(request):
            return JsonResponse(error_body(message, code, errors), status=status)
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(reverse("admin:alerts_alert_change", args=[obj.pk]))

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

        widgets = {
            "slack_webhook_url": forms.URLInput(attrs={"size": 60}),
            "teams_webhook_url": forms.URLInput(attrs={"size": 60}),
            "time_zone": forms.TextInput(attrs={"size": 30, "placeholder": "Europe/Berlin"}),
        }
        help_texts = {
            "time_zone": "An IANA time zone name, e.g. Europe/Berlin or America/New_York.",
            "quiet_hours_start": "Local time (e.g. 22:00); critical alerts are never held back.",
        }

    def clean_time_zone(self) -> str:
        name = (self.cleaned_data.get("time_zone") or "").strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError("Unknown time zone (use an IANA name such as Europe/Berlin).") from None
        return name

    def clean(self) -> dict:
        data = super().clean()
        if (data.get("quiet_hours_start") is None) != (data.get("quiet_hours_end") is None):
            self.add_error("quiet_hours_end", "Set both quiet-hours times, or neither.")
        return data

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

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [path("mine/", self.admin_site.admin_view(self.mine_view), name=f"{info}_mine"), *super().get_urls()]

    def mine_view(self, request: HttpRequest) -> HttpResponse:
        """ "My notification preferences" (the header link): the user's own row, or the form that creates it."""
        own = NotificationPreference.objects.filter(user=request.user).values_list("pk", flat=True).first()
        if own is not None and self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:alerts_notificationpreference_change", args=[own]))
        if own is None and self.has_add_permission(request):
            return HttpResponseRedirect(f"{reverse('admin:alerts_notificationpreference_add')}?user={request.user.pk}")
        raise PermissionDenied

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if is_csm(request):  # one row each: there is no other to add
            extra_context = {**(extra_context or {}), "show_save_and_add_another": False}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        # A CSM's preferences are their own: no user to pick (they may not list users anyway).
        fields = list(super().get_fields(request, obj))
        return [name for name in fields if name != "user"] if is_csm(request) else fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        # One row per user: a CSM who has theirs edits it (adding a second would collide).
        if is_csm(request) and NotificationPreference.objects.filter(user=request.user).exists():
            return False
        return super().has_add_permission(request)

    def save_model(self, request: HttpRequest, obj: NotificationPreference, form: object, change: bool) -> None:
        if is_csm(request):
            obj.user = request.user
        super().save_model(request, obj, form, change)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(EngineRowsAdmin):
    """The delivery log: read-only, a CSM sees their own. Failed sends are retried by the
    dispatcher on its own schedule; there is no hand retry to offer."""

    customer_path = "recipient"
    list_display = ("id", "channel", "recipient", "status", "attempts", "alert", "due_at", "sent_at", "last_error")
    list_filter = ("status", "channel")
    list_select_related = ("recipient", "alert")
    search_fields = ("recipient__username", "grouping_key", "last_error")
    date_hierarchy = "created_at"
