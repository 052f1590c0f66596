"""Admin for interventions: the CSM's retention work, scoped to their portfolio."""

from typing import Any
from urllib.parse import quote

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from core.exceptions import NotFoundError
from core.exports import report_export, report_export_links
from customers.admin_scoping import PortfolioScopedAdmin, RoleGatedInlineMixin
from interventions.models import Intervention
from interventions.selectors import intervention_analytics
from interventions.services import intervention_bulk_action

# Short free-text columns: a one-line input, not a textarea.
_ONE_LINE = {name: forms.TextInput(attrs={"size": 30}) for name in ("type", "assigned_csm", "next_action")}


class InterventionForm(forms.ModelForm):
    class Meta:
        model = Intervention
        fields = (
            "customer",
            "type",
            "status",
            "priority",
            "assigned_csm",
            "description",
            "next_action",
            "due_date",
            "completed_at",
            "notes",
            "outcome",
            "revenue_impact",
        )
        widgets = _ONE_LINE


def prepare_intervention(intervention: Intervention, user: Any) -> None:
    """Apply the rules `interventions.services` applies to API writes to an admin-saved intervention.

    New work records who created it and defaults its assignee to the account owner; work marked
    completed gets a completion time, so analytics (time to complete) see it.
    """
    if intervention._state.adding:
        if intervention.created_by_id is None and getattr(user, "is_authenticated", False):
            intervention.created_by = user
        owner = intervention.customer.owner if intervention.customer_id else None
        if not intervention.assigned_csm and owner is not None:
            intervention.assigned_csm = owner.get_full_name() or owner.get_username()
    if intervention.status == Intervention.Status.COMPLETED and not intervention.completed_at:
        intervention.completed_at = timezone.now()


class InterventionInline(RoleGatedInlineMixin, admin.TabularInline):
    """Open interventions on the customer page, editable by those who may change interventions.

    Only open work is listed (the finished history is one link away), which keeps the page bounded
    without slicing an editable formset.
    """

    model = Intervention
    form = InterventionForm
    fields = ("type", "status", "priority", "assigned_csm", "due_date", "next_action", "created_at")
    readonly_fields = ("created_at",)
    extra = 0
    show_change_link = True
    verbose_name_plural = "open interventions"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Intervention]:
        return super().get_queryset(request).filter(status__in=Intervention.OPEN_STATUSES)


@admin.register(Intervention)
class InterventionAdmin(PortfolioScopedAdmin):
    customer_path = "customer__owner"
    form = InterventionForm
    list_display = (
        "id",
        "customer",
        "type",
        "status",
        "priority",
        "assigned_csm",
        "due_date",
        "outcome",
        "created_at",
    )
    list_display_links = ("id", "type")
    list_filter = ("status", "priority", "outcome", "type")
    search_fields = ("type", "assigned_csm", "description", "notes", "customer__name", "customer__company")
    date_hierarchy = "created_at"
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)
    readonly_fields = ("id", "created_at", "created_by")
    fieldsets = (
        (None, {"fields": ("id", "customer", "type", "status", "priority", "assigned_csm")}),
        ("Work", {"fields": ("description", "next_action", "due_date", "notes")}),
        ("Outcome", {"fields": ("completed_at", "outcome", "revenue_impact")}),
        ("Record", {"fields": ("created_at", "created_by")}),
    )
    actions = ("mark_completed", "escalate")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("analytics/", wrap(self.analytics_view), name="interventions_intervention_analytics"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"analytics_url": reverse("admin:interventions_intervention_analytics"), **(extra_context or {})}
        return super().changelist_view(request, context)

    def analytics_view(self, request: HttpRequest) -> HttpResponse:
        """Intervention analytics as the API answers them (the user's scope), each figure with its
        unit and how it is counted, the counts linked to the rows behind them. The downloads carry
        the bare numbers. Playbook results are on the playbook report and Reports, not here."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        answer = intervention_analytics(user=request.user, playbooks=None)
        overall = {**answer["overall_metrics"], **answer["retention_analysis"]}
        # The list as the figures count it: retention work, without logged calls and notes.
        interventions = reverse("admin:interventions_intervention_changelist") + "?activity__exact="
        customers = reverse("admin:customers_customer_changelist")
        cost = f"{settings.INTERVENTION_COST:,.0f}"
        # (label, key, unit, how it is counted, the rows behind it)
        measures = [
            (
                "Interventions",
                "total_interventions",
                "",
                "retention work in your scope (logged calls and notes excluded)",
                interventions,
            ),
            (
                "Completed",
                "completed_interventions",
                "",
                "status completed",
                f"{interventions}&status__exact=completed",
            ),
            (
                "Success rate",
                "success_rate",
                " %",
                "completed interventions whose outcome is recorded as succeeded, of all completed",
                f"{interventions}&status__exact=completed&outcome__exact=succeeded",
            ),
            (
                "Revenue saved",
                "estimated_revenue_saved",
                "",
                "sum of the revenue impact recorded on succeeded interventions",
                "",
            ),
            (
                "Estimated cost",
                "estimated_costs",
                "",
                f"{cost} per intervention (the INTERVENTION_COST setting: CSM time is not tracked)",
                "",
            ),
            ("Return on cost", "roi_percentage", " %", "(revenue saved − estimated cost) ÷ estimated cost", ""),
            (
                "High-risk customers",
                "high_risk_customers",
                "",
                "active customers at or above the high-risk band",
                f"{customers}?risk=high&is_active__exact=1",
            ),
            (
                "… with open work",
                "high_risk_with_interventions",
                "",
                "of those, with an intervention not yet completed or cancelled",
                "",
            ),
            (
                "Coverage",
                "intervention_coverage",
                " %",
                "high-risk customers with open work, of all high-risk customers",
                "",
            ),
            (
                "Retention improvement",
                "estimated_retention_improvement",
                " points",
                "share of customers still active after a succeeded intervention minus that after a failed one",
                "",
            ),
        ]
        type_headers = [
            "Type",
            "Interventions",
            "Succeeded",
            "Success rate, % of all of the type",
            "Revenue saved per success",
            "Days to complete, average",
        ]
        type_keys = [
            "type",
            "total_interventions",
            "successful",
            "success_rate",
            "avg_cost_savings",
            "avg_time_to_complete",
        ]
        by_type = answer["success_rates_by_type"]
        insights = {"title": "Insights", "headers": ["Insight"], "rows": [[text] for text in answer["insights"]]}
        download = report_export(
            request,
            "Intervention analytics",
            [
                {
                    "title": "Overall",
                    "headers": ["Measure", "Value", "Unit", "How it is counted"],
                    "rows": [[label, overall[key], unit.strip(), how] for label, key, unit, how, _ in measures],
                },
                {
                    "title": "By intervention type",
                    "headers": type_headers,
                    "rows": [[row[k] for k in type_keys] for row in by_type],
                },
                insights,
            ],
        )
        if download is not None:
            return download

        def figure(value: int | float, unit: str, url: str) -> str | dict[str, str]:
            text = f"{value:,}{unit}"
            return {"text": text, "url": url} if url else text

        shown = [
            {
                "title": "Overall",
                "headers": ["Measure", "Value", "How it is counted"],
                "rows": [[label, figure(overall[key], unit, url), how] for label, key, unit, how, url in measures],
            },
            {
                "title": "By intervention type",
                "headers": type_headers,
                "rows": [
                    [
                        {"text": row["type"], "url": f"{interventions}&type={quote(row['type'])}"},
                        f"{row['total_interventions']:,}",
                        f"{row['successful']:,}",
                        f"{row['success_rate']} %",
                        f"{row['avg_cost_savings']:,}",
                        row["avg_time_to_complete"],
                    ]
                    for row in by_type
                ],
            },
            insights,
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Intervention analytics",
            "tables": shown,
            "export_links": report_export_links(request),
        }
        return TemplateResponse(request, "admin/report.html", context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Intervention]:
        # created_by is shown read-only on the change page; fetch it with the row.
        return super().get_queryset(request).select_related("customer", "created_by")

    def save_model(self, request: HttpRequest, obj: Model, form: forms.ModelForm, change: bool) -> None:
        prepare_intervention(obj, request.user)
        super().save_model(request, obj, form, change)

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Intervention], action: str, done: str) -> None:
        """Run a bulk action through the service, which re-checks the scope and is all-or-nothing."""
        ids = list(queryset.values_list("pk", flat=True))
        try:
            changed = intervention_bulk_action(user=request.user, ids=ids, action=action)
        except NotFoundError as error:
            self.message_user(request, str(error.detail), messages.ERROR)
            return
        self.message_user(request, f"{len(changed)} intervention(s) {done}.", messages.SUCCESS)

    @admin.action(description="Mark selected interventions completed", permissions=("change",))
    def mark_completed(self, request: HttpRequest, queryset: QuerySet[Intervention]) -> None:
        self._bulk(request, queryset, "complete", "marked completed")

    @admin.action(description="Escalate selected interventions (priority high)", permissions=("change",))
    def escalate(self, request: HttpRequest, queryset: QuerySet[Intervention]) -> None:
        self._bulk(request, queryset, "escalate", "escalated")
