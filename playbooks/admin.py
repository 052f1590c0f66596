"""Admin for playbooks (book-wide: validated definitions, import/export, trigger, dry run, report)
and their executions (scoped to the CSM's customers; cancel and retry)."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from rest_framework import serializers

from churnshield.admin_scoping import PortfolioScopedAdmin, changelist_link
from churnshield.auth.roles import can_write
from churnshield.exceptions import ConflictError, NotFoundError
from playbooks import selectors, services
from playbooks.definitions import validate_exit_conditions, validate_steps
from playbooks.models import Playbook, PlaybookExecution, PlaybookStepRun, TriggerRule

PAGE = "admin/playbooks/page.html"


def _errors_text(exc: serializers.ValidationError) -> str:
    return json.dumps(exc.detail, default=str)


class PlaybookForm(forms.ModelForm):
    class Meta:
        model = Playbook
        fields = [
            "name",
            "description",
            "intervention_type",
            "causes",
            "steps",
            "exit_conditions",
            "holdout_share",
            "reenrol_days",
            "is_active",
        ]

    def clean_steps(self) -> list[dict]:
        try:
            return validate_steps(self.cleaned_data.get("steps"))
        except serializers.ValidationError as exc:  # names the step index and field
            raise forms.ValidationError(_errors_text(exc)) from None

    def clean_exit_conditions(self) -> list[dict]:
        try:
            return validate_exit_conditions(self.cleaned_data.get("exit_conditions") or [])
        except serializers.ValidationError as exc:
            raise forms.ValidationError(_errors_text(exc)) from None


class TriggerRuleInline(admin.TabularInline):
    model = TriggerRule
    extra = 0
    fields = ("kind", "params", "segment", "is_active")


class CustomerListForm(forms.Form):
    customer_ids = forms.CharField(widget=forms.Textarea, help_text="Customer ids, separated by commas or lines.")

    def clean_customer_ids(self) -> list[int]:
        raw = self.cleaned_data["customer_ids"].replace(",", " ").split()
        try:
            return [int(item) for item in raw]
        except ValueError:
            raise forms.ValidationError("ids must be integers") from None


class ImportForm(forms.Form):
    document = forms.CharField(widget=forms.Textarea, help_text="JSON exported by playbooks_export.")


@admin.register(Playbook)
class PlaybookAdmin(PortfolioScopedAdmin):
    """Playbooks are book-wide reference data; the pages below show a CSM only their own customers."""

    book_wide = True
    form = PlaybookForm
    inlines = [TriggerRuleInline]
    list_display = ("name", "intervention_type", "is_active", "step_count", "holdout_share", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "description")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "name",
        "description",
        "intervention_type",
        "causes",
        "steps",
        "exit_conditions",
        "holdout_share",
        "reenrol_days",
        "is_active",
        "created_at",
        "executions",
        "tools",
    )
    readonly_fields = ("id", "created_at", "executions", "tools")
    actions = ["export_json"]
    change_list_template = None

    @admin.display(description="Steps")
    def step_count(self, obj: Playbook) -> int:
        return len(obj.steps) if isinstance(obj.steps, list) else 0

    @admin.display(description="Executions")
    def executions(self, obj: Playbook) -> str:
        """A link rather than a count: the changelist behind it shows only what the user may see."""
        if obj.pk is None:
            return "—"
        return changelist_link(PlaybookExecution, "Executions of this playbook", playbook__id__exact=obj.pk)

    @admin.display(description="Tools")
    def tools(self, obj: Playbook) -> str:
        from django.utils.html import format_html

        if obj.pk is None:
            return "—"
        from django.urls import reverse

        return format_html(
            '<a href="{}">Dry run</a> · <a href="{}">Trigger for customers</a> · <a href="{}">Report</a> · '
            '<a href="{}">Import</a>',
            reverse("admin:playbooks_playbook_dry_run", args=[obj.pk]),
            reverse("admin:playbooks_playbook_trigger", args=[obj.pk]),
            reverse("admin:playbooks_playbook_report"),
            reverse("admin:playbooks_playbook_import"),
        )

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/dry-run/", wrap(self.dry_run_view), name="playbooks_playbook_dry_run"),
            path("<int:pk>/trigger/", wrap(self.trigger_view), name="playbooks_playbook_trigger"),
            path("report/", wrap(self.report_view), name="playbooks_playbook_report"),
            path("import/", wrap(self.import_view), name="playbooks_playbook_import"),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, title: str, **context: Any) -> TemplateResponse:
        return TemplateResponse(request, PAGE, {**self.admin_site.each_context(request), "title": title, **context})

    @admin.action(description="Export selected playbooks as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Playbook]) -> HttpResponse:
        documents = [selectors.playbook_export(p) for p in queryset.prefetch_related("rules")]
        response = HttpResponse(json.dumps(documents, indent=2, sort_keys=True), content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="playbooks.json"'
        return response

    # The custom pages refuse with Django's exceptions: DRF's (NotFoundError) are rendered only
    # inside DRF views, and the admin answered them with a 500.
    def dry_run_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        playbook = get_object_or_404(self.get_queryset(request), pk=pk)
        answer = selectors.dry_run(user=request.user, playbook=playbook)
        rows = [
            [c["customerId"], c["customer"], ", ".join(c["reasons"]), "; ".join(s["wouldDo"] for s in c["steps"])]
            for c in answer["customers"]
        ]
        return self._page(
            request,
            f"Dry run: {playbook.name}",
            message=f"{answer['wouldEnrol']} customers would enrol today ({answer['excluded']} excluded by caps). "
            "Nothing was written.",
            tables=[{"title": "Customers", "headers": ["Id", "Customer", "Why", "Steps"], "rows": rows}],
        )

    def trigger_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        if not (self.has_view_permission(request) and can_write(request.user)):
            raise PermissionDenied
        playbook = get_object_or_404(self.get_queryset(request), pk=pk)
        form = CustomerListForm(request.POST or None)
        message = ""
        if request.method == "POST" and form.is_valid():
            try:
                answer = services.playbook_bulk_trigger(
                    user=request.user, playbook_id=playbook.pk, customer_ids=form.cleaned_data["customer_ids"]
                )
                message = f"Enrolled {answer['enrolled']} of {answer['requested']}; skipped {answer['skipped']}."
            except NotFoundError as exc:
                message = str(exc)
        return self._page(request, f"Trigger {playbook.name}", form=form, message=message, submit="Trigger")

    def report_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        answer = selectors.playbook_analytics(user=request.user)
        keys = [
            "executions",
            "holdout_executions",
            "completion_rate",
            "step_failure_rate",
            "avg_time_to_complete_hours",
            "risk_change_30d",
            "churn_rate",
            "holdout_churn_rate",
            "revenue_retained",
        ]
        return self._page(
            request,
            "Playbook report",
            tables=[
                {
                    "title": "By playbook",
                    "headers": ["Playbook", *keys],
                    "rows": [[r["name"], *[r[k] for k in keys]] for r in answer["playbooks"]],
                },
                {
                    "title": "By intervention type",
                    "headers": ["Type", *keys],
                    "rows": [[r["intervention_type"], *[r[k] for k in keys]] for r in answer["by_intervention_type"]],
                },
            ],
        )

    def import_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None)
        message = ""
        if request.method == "POST" and form.is_valid():
            try:
                documents = json.loads(form.cleaned_data["document"])
                counts = services.playbooks_import(documents=documents if isinstance(documents, list) else [documents])
                message = f"Imported: {counts}"
            except ValueError as exc:
                message = f"Not JSON: {exc}"
            except serializers.ValidationError as exc:
                message = f"Invalid, nothing imported: {_errors_text(exc)}"
        return self._page(request, "Import playbooks", form=form, message=message, submit="Import")


class StepRunInline(admin.TabularInline):
    model = PlaybookStepRun
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("step_key", "step_type", "status", "attempts", "started_at", "finished_at", "due_at", "error")
    readonly_fields = fields


@admin.register(PlaybookExecution)
class PlaybookExecutionAdmin(PortfolioScopedAdmin):
    customer_path = "customer__owner"
    inlines = [StepRunInline]
    list_display = ("id", "playbook", "customer", "status", "trigger", "is_holdout", "started_at", "completed_at")
    list_filter = ("status", "trigger", "is_holdout", ("playbook", admin.RelatedOnlyFieldListFilter))
    search_fields = ("customer__name", "customer__company", "playbook__name")
    date_hierarchy = "started_at"
    list_select_related = ("playbook", "customer")
    autocomplete_fields = ("playbook", "customer")
    readonly_fields = ("id", "current_step", "next_run_at", "lease_token", "attempts", "error", "is_holdout")
    actions = ["cancel_executions", "retry_executions"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PlaybookExecution]:
        return super().get_queryset(request).select_related("playbook", "customer")

    def _each(self, request: HttpRequest, queryset: QuerySet, operation: Any, verb: str) -> None:
        done, problems = 0, []
        for pk in queryset.values_list("pk", flat=True):
            try:
                operation(user=request.user, execution_id=pk)
                done += 1
            except (ConflictError, NotFoundError) as exc:
                problems.append(f"#{pk}: {exc}")
        self.message_user(request, f"{verb} {done} execution(s).", messages.SUCCESS)
        if problems:
            self.message_user(request, "; ".join(problems[:10]), messages.WARNING)

    @admin.action(description="Cancel selected running executions")
    def cancel_executions(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, services.execution_cancel, "Cancelled")

    @admin.action(description="Retry selected failed or cancelled executions")
    def retry_executions(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, services.execution_retry, "Retried")
