"""Admin for customers' time-stamped facts (sessions, tickets, NPS answers, billing events,
subscriptions) and the customer list's filters.

A CSM sees only the facts of the customers they own; managers, admins and viewers see the whole
book (see `customers.admin_scoping`). The customer list and page themselves (Customer 360) compose
every app's rows, so they live in the workspace (`workspace/customer_admin.py`).
"""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from core.auth.roles import sees_all_customers
from customers.admin_scoping import (
    PortfolioScopedAdmin,
)
from customers.models import BillingEvent, Customer, NpsResponse, Subscription, SupportTicket, UserSession
from customers.selectors import customer_owner_ids, customer_plans, risk_band_q
from customers.services import billing_event_record


class RiskLevelFilter(admin.SimpleListFilter):
    """Customers by risk band, as the API's `riskLevel` (churned customers in none)."""

    title = "risk level"
    parameter_name = "risk"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("high", "High"), ("medium", "Medium"), ("low", "Low")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
        value = self.value()
        return queryset.filter(risk_band_q(value)) if value in ("high", "medium", "low") else queryset


class PlanFilter(admin.AllValuesFieldListFilter):
    """Django's filter by plan (`?plan=Pro`), offering the plans of the customers the user may
    see, read by a loose index scan (`customer_plans`) rather than a `SELECT DISTINCT plan` over
    the whole book; and only when the choices are drawn (an export applies the filter only)."""

    active_only = False  # the renewals list shows active customers only

    def __init__(self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = SimpleLazyObject(lambda: customer_plans(user=request.user, active_only=self.active_only))


class OwnerFilter(admin.RelatedOnlyFieldListFilter):
    """Django's filter by owner, offering the users who own customers; for those who see the whole
    book (a CSM has no owner filter) they come from the per-owner counts, not a DISTINCT over it."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        if not sees_all_customers(request.user):
            return super().field_choices(field, request, model_admin)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(
            include_blank=False, limit_choices_to={"pk__in": customer_owner_ids()}, ordering=ordering
        )


class CustomerFactAdmin(PortfolioScopedAdmin):
    """Facts synced from integrations: scoped through their customer, customer picked by autocomplete."""

    customer_path = "customer__owner"
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("customer")


@admin.register(UserSession)
class UserSessionAdmin(CustomerFactAdmin):
    list_display = ("id", "customer", "started_at", "ended_at", "pages_viewed")
    search_fields = ("customer__name", "customer__company", "external_id")
    date_hierarchy = "started_at"
    readonly_fields = ("id",)
    show_full_result_count = False  # the largest table: skip the second COUNT(*)


@admin.register(SupportTicket)
class SupportTicketAdmin(CustomerFactAdmin):
    list_display = ("subject", "customer", "status", "priority", "opened_at", "solved_at")
    list_filter = ("status", "priority")
    search_fields = ("subject", "customer__name", "customer__company", "external_id")
    date_hierarchy = "opened_at"
    readonly_fields = ("id",)


@admin.register(NpsResponse)
class NpsResponseAdmin(CustomerFactAdmin):
    list_display = ("id", "customer", "score", "short_comment", "responded_at")
    list_filter = ("score",)
    search_fields = ("comment", "customer__name", "customer__company", "external_id")
    date_hierarchy = "responded_at"
    readonly_fields = ("id",)

    @admin.display(description="Comment")
    def short_comment(self, obj: NpsResponse) -> str:
        return obj.comment if len(obj.comment) <= 80 else f"{obj.comment[:77]}..."


@admin.register(BillingEvent)
class BillingEventAdmin(CustomerFactAdmin):
    list_display = ("id", "customer", "kind", "amount", "mrr_after", "plan_after", "occurred_at")
    list_filter = ("kind", "plan_after")
    search_fields = ("customer__name", "customer__company", "plan_after", "external_id")
    date_hierarchy = "occurred_at"
    readonly_fields = ("id",)

    def save_model(self, request: HttpRequest, obj: BillingEvent, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
        else:
            billing_event_record(event=obj)


@admin.register(Subscription)
class SubscriptionAdmin(CustomerFactAdmin):
    """Every version of every subscription (from a history import); billing rows derive from them."""

    list_display = ("external_id", "customer", "plan", "mrr", "status", "started_at", "ended_at")
    list_filter = ("status", "plan")
    search_fields = ("customer__name", "customer__company", "plan", "external_id")
    date_hierarchy = "started_at"
    readonly_fields = ("id",)


# History imports (upload, dry run, confirm, progress): managers and admins.
from customers import import_admin  # noqa: E402, F401
