"""Admin for alerts: a CSM sees the alerts on their own customers; book-wide alerts are for managers."""

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from alerts.models import Alert
from alerts.services import alert_set_read
from churnshield.admin_scoping import PortfolioScopedAdmin, is_csm


@admin.register(Alert)
class AlertAdmin(PortfolioScopedAdmin):
    customer_path = "customer__owner"
    list_display = ("title", "severity", "customer", "read", "created_at")
    list_filter = ("read", "severity")
    search_fields = ("title", "message", "customer__name", "customer__company")
    date_hierarchy = "created_at"
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)
    fields = ("id", "title", "severity", "customer", "message", "read", "created_at")
    readonly_fields = ("id", "created_at")
    actions = ("mark_read", "mark_unread")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        return super().get_queryset(request).select_related("customer")

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
