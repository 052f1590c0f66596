"""The renewals page of the admin: contracts renewing soon, with risk and revenue at risk, the
retained-revenue forecast and revenue retention, each exportable as CSV as filtered.

A proxy of Customer scoped like the customer list (a CSM sees their own portfolio). Its change page
edits the contract by hand only (renewal date, ARR, billing period) through `customers.contracts`.
"""

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import DecimalField, ExpressionWrapper, F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from core.exports import FORMATS, export_links, export_response
from customers import renewals
from customers.admin import OwnerFilter, PlanFilter
from customers.admin_scoping import PortfolioScopedAdmin
from customers.contracts import customer_contract_set
from customers.models import Customer, Renewal


class ActivePlanFilter(PlanFilter):
    active_only = True  # the list holds active customers only


class RenewsWithinFilter(admin.SimpleListFilter):
    title = "renews within"
    parameter_name = "within"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            *((str(days), f"{days} days") for days in renewals.WINDOWS),
            ("past", "Renewal date passed"),
            ("none", "No renewal date"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        today = timezone.localdate()
        value = self.value()
        if value == "past":
            return queryset.filter(renewal_date__lt=today)
        if value == "none":
            return queryset.filter(renewal_date__isnull=True)
        if value in {str(days) for days in renewals.WINDOWS}:
            return queryset.filter(renewal_date__gte=today, renewal_date__lte=today + dt.timedelta(days=int(value)))
        return queryset


class RiskFilter(admin.SimpleListFilter):
    title = "risk level"
    parameter_name = "risk"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("high", "High"), ("medium", "Medium"), ("low", "Low")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        high, medium = settings.RISK_HIGH_THRESHOLD, settings.RISK_MEDIUM_THRESHOLD
        bands = {
            "high": Q(churn_risk__gte=high),
            "medium": Q(churn_risk__gte=medium, churn_risk__lt=high),
            "low": Q(churn_risk__lt=medium),
        }
        return queryset.filter(bands[self.value()]) if self.value() in bands else queryset


class ContractForm(forms.ModelForm):
    class Meta:
        model = Renewal
        fields = ("renewal_date", "contract_value", "bill_period_months")
        labels = {"contract_value": "Contract value (ARR)"}

    def clean_contract_value(self) -> Decimal | None:
        value = self.cleaned_data.get("contract_value")
        if value is not None and value < 0:
            raise forms.ValidationError("The contract value cannot be negative.")
        return value

    def clean_bill_period_months(self) -> int | None:
        value = self.cleaned_data.get("bill_period_months")
        if value is not None and not 1 <= value <= 120:
            raise forms.ValidationError("A billing period is 1 to 120 months.")
        return value


@admin.register(Renewal)
class RenewalAdmin(PortfolioScopedAdmin):
    customer_path = "owner"
    form = ContractForm
    change_list_template = "admin/customers/renewal/change_list.html"
    list_display = (
        "name",
        "renewal_date",
        "days_left",
        "plan",
        "mrr",
        "contract_value",
        "risk",
        "revenue_at_risk",
        "owner_name",
        "contract_source",
    )
    list_filter = (
        RenewsWithinFilter,
        RiskFilter,
        ("plan", ActivePlanFilter),
        ("owner", OwnerFilter),
    )
    search_fields = ("name", "email", "company")
    list_select_related = ("owner",)
    list_per_page = 50
    show_full_result_count = False  # a second COUNT over every active customer on each view
    export_values = {"risk": "churn_risk"}
    fieldsets = (
        (None, {"fields": ("name", "company", "plan", "mrr", "risk", "owner_name")}),
        ("Contract", {"fields": ("renewal_date", "contract_value", "bill_period_months", "contract_source")}),
    )
    readonly_fields = ("name", "company", "plan", "mrr", "risk", "owner_name", "contract_source")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        at_risk = ExpressionWrapper(
            F("mrr") * F("churn_risk"), output_field=DecimalField(max_digits=18, decimal_places=6)
        )
        return (
            super()
            .get_queryset(request)
            .filter(is_active=True)
            .annotate(revenue_at_risk_value=at_risk)
            .order_by(F("renewal_date").asc(nulls_last=True), "id")
        )

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        return [F("renewal_date").asc(nulls_last=True), "id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a renewal is a customer's contract: customers are added on their own page

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Days left", ordering="renewal_date")
    def days_left(self, obj: Customer) -> int | None:
        return None if obj.renewal_date is None else (obj.renewal_date - timezone.localdate()).days

    @admin.display(description="Churn risk", ordering="churn_risk")
    def risk(self, obj: Customer) -> str:
        return f"{float(obj.churn_risk) * 100:.1f}%"

    @admin.display(description="Revenue at risk (MRR)", ordering="revenue_at_risk_value")
    def revenue_at_risk(self, obj: Customer) -> Decimal:
        return renewals.revenue_at_risk(obj)

    @admin.display(description="Owner", ordering="owner__username")
    def owner_name(self, obj: Customer) -> str:
        return obj.owner.get_username() if obj.owner else "—"

    def save_model(self, request: HttpRequest, obj: Customer, form: forms.ModelForm, change: bool) -> None:
        customer_contract_set(
            customer=obj,
            renewal_date=form.cleaned_data["renewal_date"],
            contract_value=form.cleaned_data["contract_value"],
            bill_period_months=form.cleaned_data["bill_period_months"],
        )

    # --- Extra pages: CSV export, forecast and retention ------------------------------------
    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("export.csv", view(self.export_view), name="customers_renewal_export"),
            path("forecast/", view(self.forecast_view), name="customers_renewal_forecast"),
            path("forecast/export.csv", view(self.forecast_export_view), name="customers_renewal_forecast_export"),
            *super().get_urls(),
        ]

    def _check_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            changelist = context["cl"]
            # The whole list's totals are the daily run's count (summing every active customer
            # would read the whole table on every view); a filtered or searched list's are counted
            # now, over the rows it shows.
            totals = None
            if not changelist.has_active_filters and not changelist.query:
                totals = renewals.stored_renewal_totals(user=request.user)
            context["renewal_totals"] = totals or renewals.renewal_totals(changelist.queryset)
            query = request.GET.urlencode()
            context["export_url"] = reverse("admin:customers_renewal_export") + (f"?{query}" if query else "")
            context["forecast_url"] = reverse("admin:customers_renewal_forecast")
        return response

    def export_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """The list as filtered, searched and sorted on the page, every row (not just the page)."""
        self._check_view(request)
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request)
        today = timezone.localdate()
        header = [
            "customer_id",
            "name",
            "company",
            "renewal_date",
            "days_left",
            "plan",
            "mrr",
            "arr",
            "churn_probability",
            "revenue_at_risk",
            "owner",
            "contract_source",
        ]
        return export_response(
            request,
            "csv",
            f"renewals-{today:%Y-%m-%d}",
            header,
            (
                [
                    c.pk,
                    c.name,
                    c.company,
                    c.renewal_date.isoformat() if c.renewal_date else "",
                    (c.renewal_date - today).days if c.renewal_date else "",
                    c.plan,
                    c.mrr,
                    c.contract_value,
                    c.churn_risk,
                    renewals.revenue_at_risk(c),
                    c.owner.get_username() if c.owner else "",
                    c.contract_source,
                ]
                for c in rows.iterator(chunk_size=2000)
            ),
        )

    def forecast_view(self, request: HttpRequest) -> TemplateResponse:
        self._check_view(request)
        overview = renewals.renewal_overview(user=request.user)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Renewal forecast and revenue retention",
            "forecast": overview.forecast,
            "retention": overview.retention,
            "counted_at": overview.counted_at,
            "export_links": export_links(reverse("admin:customers_renewal_forecast_export")),
            "renewals_url": reverse("admin:customers_renewal_changelist"),
        }
        return TemplateResponse(request, "admin/customers/renewal/forecast.html", context)

    def forecast_export_view(self, request: HttpRequest) -> HttpResponse:
        """Both tables in one sheet, a row per table and month, as CSV (default) or `?format=xlsx`."""
        self._check_view(request)
        overview = renewals.renewal_overview(user=request.user)
        forecast, retention = overview.forecast, overview.retention
        header = [
            "table",
            "month",
            "customers_renewing",
            "mrr_renewing",
            "expected_retained_mrr",
            "retained_low_90",
            "retained_high_90",
            "start_mrr",
            "churned_mrr",
            "contraction_mrr",
            "expansion_mrr",
            "grr",
            "nrr",
        ]
        rows: list[list[Any]] = [
            ["forecast", f"{m.month:%Y-%m}", m.customers, m.mrr_up, m.expected, m.low, m.high, *[None] * 6]
            for m in forecast
        ]
        rows += [
            [
                "retention",
                f"{m.month:%Y-%m}",
                *[None] * 5,
                m.start_mrr,
                m.churned,
                m.contraction,
                m.expansion,
                None if m.grr is None else round(m.grr, 4),
                None if m.nrr is None else round(m.nrr, 4),
            ]
            for m in retention
        ]
        fmt = request.GET.get("format", "csv")
        if fmt not in FORMATS:
            return HttpResponseBadRequest("format is csv or xlsx")
        return export_response(request, fmt, f"renewal-forecast-{timezone.localdate():%Y-%m-%d}", header, rows)
