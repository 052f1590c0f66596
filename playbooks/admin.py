"""Admin for playbooks (book-wide: validated definitions, import/export, trigger, dry run, report),
their executions (scoped to the CSM's customers; cancel and retry), the review queue of customer
e-mails (scoped; approve, edit, discard) and the go-ahead for trigger rules (managers)."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from core.auth.roles import can_write
from core.exceptions import ConflictError, InvalidInputError, NotFoundError
from core.exports import report_export, report_export_links
from customers.admin_scoping import EngineRowsAdmin, PortfolioScopedAdmin, ReadOnlyTabularInline, changelist_link
from customers.models import Customer
from customers.selectors import customer_scope
from playbooks import approvals, rules, selectors, services
from playbooks.admin_editor import PlaybookEditorAdmin, PlaybookEditorFormMixin
from playbooks.admin_rules import TriggerRuleFormAdmin, describe_rules
from playbooks.definitions import validate_exit_conditions, validate_steps
from playbooks.models import EmailReview, Playbook, PlaybookExecution, PlaybookStepRun, TriggerRule
from predictions.causes import CAUSES

PAGE = "admin/playbooks/page.html"


def _errors_text(exc: InvalidInputError) -> str:
    return json.dumps(exc.errors, default=str)


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
            "auto_send_customer_emails",
        ]

    def clean_steps(self) -> list[dict]:
        try:
            return validate_steps(self.cleaned_data.get("steps"))
        except InvalidInputError as exc:  # names the step index and field
            raise forms.ValidationError(_errors_text(exc)) from None

    def clean_exit_conditions(self) -> list[dict]:
        try:
            return validate_exit_conditions(self.cleaned_data.get("exit_conditions") or [])
        except InvalidInputError as exc:
            raise forms.ValidationError(_errors_text(exc)) from None


class PlaybookEditorForm(PlaybookEditorFormMixin, PlaybookForm):
    """The admin's playbook form: the steps and exit conditions come from their rows (the step
    editor), not JSON fields; the causes it answers are ticked, not typed."""

    causes = forms.MultipleChoiceField(
        choices=[(name, name) for name in CAUSES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The churn causes this playbook answers: the Customer 360 recommends it for them.",
    )

    class Meta(PlaybookForm.Meta):
        fields = [name for name in PlaybookForm.Meta.fields if name not in ("steps", "exit_conditions")]
        widgets = {
            "name": forms.TextInput(attrs={"size": 60}),
            "intervention_type": forms.TextInput(attrs={"size": 60}),
            "description": forms.Textarea(attrs={"rows": 3, "cols": 80}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A cause no longer in the list stays ticked rather than silently dropped on save.
        field = self.fields["causes"]
        stored = [name for name in (self.instance.causes or []) if name not in CAUSES]
        field.choices = [*field.choices, *((name, name) for name in stored)]


def cause_labels(causes: Any) -> str:
    """The causes a playbook answers, by the labels the editor's ticks carry, in the editor's order
    (a cause no longer known after them, as stored)."""
    labels = dict(PlaybookEditorForm.base_fields["causes"].choices)
    names = [name for name in causes or [] if isinstance(name, str)]
    known = [labels[name] for name in labels if name in names]
    return ", ".join([*known, *(name for name in names if name not in labels)]) or "—"


def automation_status(rule: TriggerRule) -> str:
    """Whether the rule enrols by itself, in words (no counts: CSMs read it too)."""
    if rule.pk is None:
        return "—"
    if not rule.is_active:
        return "off"
    if rules.is_approved(rule):
        by = rule.approved_by.get_username() if rule.approved_by else "?"
        return f"automatic since {rule.approved_at:%Y-%m-%d %H:%M} UTC (go-ahead by {by})"
    return "paused: waiting for a manager's go-ahead"


def pause_if_switched_on(form: forms.ModelForm) -> None:
    """A rule switched on again needs a fresh go-ahead (an edit already voids the old one)."""
    rule = form.instance
    if rule.pk is not None and "is_active" in form.changed_data and rule.is_active:
        approvals.trigger_rule_pause(rule=rule)


class TriggerRuleInline(admin.TabularInline):
    """The playbook's rules in words. Each is edited on its own form (Trigger rules), where a change
    also pauses it until a manager's go-ahead."""

    model = TriggerRule
    extra = 0
    fields = ("rule", "is_active", "automation")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_formset(self, request: HttpRequest, obj: Model | None = None, **kwargs: Any) -> Any:
        base = super().get_formset(request, obj, **kwargs)

        class DescribedRules(base):  # type: ignore[valid-type, misc]
            """Every row's rule in words from one read of the bands and owners, not one per row."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                describe_rules(form.instance for form in self.initial_forms)

        return DescribedRules

    @admin.display(description="Rule")
    def rule(self, obj: TriggerRule) -> str:
        return obj.text  # type: ignore[attr-defined]

    @admin.display(description="Automatic enrolment")
    def automation(self, obj: TriggerRule) -> str:
        return automation_status(obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[TriggerRule]:
        return super().get_queryset(request).select_related("approved_by")


class CustomerListForm(forms.Form):
    """Customers picked by name with the admin's autocomplete (only the user's own), never typed ids."""

    customer_ids = forms.ModelMultipleChoiceField(queryset=Customer.objects.none(), label="Customers")

    def __init__(self, *args: Any, user: Any, admin_site: admin.AdminSite, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["customer_ids"]
        # The autocomplete asks the customers admin (scoped to the user) through the execution's
        # customer foreign key. The queryset after the widget: setting it gives the widget its choices.
        field.widget = AutocompleteSelectMultiple(PlaybookExecution._meta.get_field("customer"), admin_site)
        field.queryset = customer_scope(user=user)

    def clean_customer_ids(self) -> list[int]:
        return [customer.pk for customer in self.cleaned_data["customer_ids"]]


class ImportForm(forms.Form):
    document = forms.CharField(widget=forms.Textarea, help_text="JSON exported by playbooks_export.")


# The report's columns: the analytics key, its header, its unit. A figure the analytics cannot
# compute yet (no enrolment 30 days old) comes back as None; some come back as 0 instead (the API's
# shape), which `_unknown` tells apart from a measured zero.
REPORT_COLUMNS = (
    ("executions", "Enrolled", ""),
    ("holdout_executions", "Held out", ""),
    ("completion_rate", "Completed", "%"),
    ("step_failure_rate", "Steps failed", "%"),
    ("avg_time_to_complete_hours", "Time to complete", " h"),
    ("risk_change_30d", "Risk change after 30 days", " pts"),
    ("churn_rate", "Churn, enrolled", "%"),
    ("holdout_churn_rate", "Churn, holdout", "%"),
    ("revenue_retained", "Revenue retained a year", "$"),
)


_UNKNOWN_WHEN = {
    "completion_rate": lambda row: row["executions"] == row["running"],  # no run finished
    "step_failure_rate": lambda row: not row["step_runs"],
    "revenue_retained": lambda row: row["churn_reduction_points"] is None,  # no holdout comparison
}


def report_cell(value: Any, unit: str) -> str:
    """One figure of the playbook report as read: "12.5%", "$1,200", "not enough data yet"."""
    if value is None:
        return "not enough data yet"
    if unit == "$":
        return f"${value:,.0f}"
    if unit:
        return f"{value:,.1f}{unit}".replace(".0" + unit, unit)
    return f"{value:,}"


def report_row(row: dict) -> list[str]:
    """A row of the playbook report: every figure, or "not enough data yet" where it is unknown."""
    return [
        report_cell(None if _UNKNOWN_WHEN.get(key, lambda _: False)(row) else row[key], unit)
        for key, _, unit in REPORT_COLUMNS
    ]


@admin.register(Playbook)
class PlaybookAdmin(PlaybookEditorAdmin, PortfolioScopedAdmin):
    """Playbooks are book-wide reference data; the pages below show a CSM only their own customers.
    Steps are edited in the step editor (`admin_editor.py`), shown read-only to those who may not change."""

    book_wide = True
    form = PlaybookEditorForm
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
        "holdout_share",
        "reenrol_days",
        "is_active",
        "auto_send_customer_emails",
        "created_at",
        "executions",
        "tools",
    )
    readonly_fields = ("id", "created_at", "executions", "tools")
    actions = ["export_json"]
    change_list_template = None

    def get_fields(self, request: HttpRequest, obj: Playbook | None = None) -> Any:
        fields = super().get_fields(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only, the causes are words as the editor ticks them, not their stored JSON list.
            return [("cause_names" if name == "causes" else name) for name in fields]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Playbook | None = None) -> tuple[str, ...]:
        fields = (*super().get_readonly_fields(request, obj), "cause_names")
        if not approvals.is_manager(request.user):  # only a manager lets a playbook e-mail customers unreviewed
            fields += ("auto_send_customer_emails",)
        return fields

    def save_model(self, request: HttpRequest, obj: Playbook, form: forms.ModelForm, change: bool) -> None:
        if "auto_send_customer_emails" in form.changed_data and not approvals.is_manager(request.user):
            raise PermissionDenied
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is TriggerRule:
            for rule_form in formset.forms:
                pause_if_switched_on(rule_form)

    @admin.display(description="Causes")
    def cause_names(self, obj: Playbook) -> str:
        return cause_labels(obj.causes)

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
        if obj.pk is None:
            return "—"
        return format_html(
            '<a href="{}">Dry run</a> · <a href="{}">Trigger for customers</a> · <a href="{}">Report</a> · '
            '<a href="{}">Import</a> · {} · {}',
            reverse("admin:playbooks_playbook_dry_run", args=[obj.pk]),
            reverse("admin:playbooks_playbook_trigger", args=[obj.pk]),
            reverse("admin:playbooks_playbook_report"),
            reverse("admin:playbooks_playbook_import"),
            changelist_link(TriggerRule, "Rules and go-ahead", playbook__id__exact=obj.pk),
            changelist_link(EmailReview, "E-mails waiting for review", playbook__id__exact=obj.pk, status="pending"),
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

    def _page(self, request: HttpRequest, title: str, **context: Any) -> HttpResponse:
        """A page of forms and tables; its tables download as CSV or XLSX with `?format=`."""
        download = report_export(request, title, context.get("tables", []))
        if download is not None:
            return download
        context = {**self.admin_site.each_context(request), "title": title, **context}
        return TemplateResponse(request, PAGE, {"export_links": report_export_links(request), **context})

    @admin.action(description="Export selected playbooks as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Playbook]) -> HttpResponse:
        documents = [selectors.playbook_export(p) for p in queryset.prefetch_related("rules")]
        response = HttpResponse(json.dumps(documents, indent=2, sort_keys=True), content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="playbooks.json"'
        return response

    # The custom pages refuse with Django's exceptions: DRF's (NotFoundError) are rendered only
    # inside DRF views, and the admin answered them with a 500.
    def dry_run_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        playbook = get_object_or_404(self.get_queryset(request), pk=pk)
        answer = selectors.dry_run(user=request.user, playbook=playbook)
        rows = [
            [
                c.customer_id,
                c.customer_name,
                ", ".join(c.reasons),
                "none: an exit condition already holds"
                if c.exits_immediately
                else "; ".join(s.would_do for s in c.steps),
            ]
            for c in answer.customers
        ]
        return self._page(
            request,
            f"Dry run: {playbook.name}",
            message=f"{answer.would_enrol} customers would enrol today ({answer.excluded} excluded by caps). "
            "Nothing was written.",
            tables=[{"title": "Customers", "headers": ["Id", "Customer", "Why", "Steps"], "rows": rows}],
        )

    def trigger_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not (self.has_view_permission(request) and can_write(request.user)):
            raise PermissionDenied
        playbook = get_object_or_404(self.get_queryset(request), pk=pk)
        form = CustomerListForm(request.POST or None, user=request.user, admin_site=self.admin_site)
        message = ""
        if request.method == "POST" and form.is_valid():
            try:
                answer = services.playbook_bulk_trigger(
                    user=request.user, playbook_id=playbook.pk, customer_ids=form.cleaned_data["customer_ids"]
                )
                message = f"Enrolled {answer.enrolled} of {answer.requested}; skipped {answer.skipped}."
            except NotFoundError as exc:
                message = str(exc)
        return self._page(request, f"Trigger {playbook.name}", form=form, message=message, submit="Trigger")

    def report_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        answer = selectors.playbook_analytics(user=request.user)
        headers = [label for _, label, _ in REPORT_COLUMNS]

        return self._page(
            request,
            "Playbook report",
            message=format_html(
                "Churn of enrolled customers against the holdout, with intervals and sample sizes: "
                '<a href="{}#cs-playbooks">Reports</a>.',
                reverse("admin:reports"),
            ),
            tables=[
                {
                    "title": "By playbook",
                    "headers": ["Playbook", *headers],
                    "rows": [[r["name"], *report_row(r)] for r in answer["playbooks"]],
                },
                {
                    "title": "By intervention type",
                    "headers": ["Intervention type", *headers],
                    "rows": [[r["intervention_type"], *report_row(r)] for r in answer["by_intervention_type"]],
                },
            ],
        )

    def import_view(self, request: HttpRequest) -> HttpResponse:
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
            except InvalidInputError as exc:
                message = f"Invalid, nothing imported: {_errors_text(exc)}"
        return self._page(request, "Import playbooks", form=form, message=message, submit="Import")


class StepRunInline(ReadOnlyTabularInline):
    model = PlaybookStepRun
    fields = ("step_key", "step_type", "status", "attempts", "started_at", "finished_at", "due_at", "error")
    readonly_fields = fields


@admin.register(PlaybookExecution)
class PlaybookExecutionAdmin(EngineRowsAdmin):
    """Executions and their step runs, read-only: cancel and retry are the actions on them."""

    customer_path = "customer__owner"
    inlines = [StepRunInline]
    list_display = ("id", "playbook", "customer", "status", "trigger", "is_holdout", "started_at", "completed_at")
    list_filter = ("status", "trigger", "is_holdout", ("playbook", admin.RelatedOnlyFieldListFilter))
    search_fields = ("customer__name", "customer__company", "playbook__name")
    date_hierarchy = "started_at"
    list_select_related = ("playbook", "customer")
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

    @admin.action(description="Cancel selected running executions", permissions=["operate"])
    def cancel_executions(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, services.execution_cancel, "Cancelled")

    @admin.action(description="Retry selected failed or cancelled executions", permissions=["operate"])
    def retry_executions(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, services.execution_retry, "Retried")


class ReviewForm(forms.Form):
    subject = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 90}))
    body = forms.CharField(max_length=20_000, widget=forms.Textarea(attrs={"rows": 14, "cols": 90}))


@admin.register(EmailReview)
class EmailReviewAdmin(PortfolioScopedAdmin):
    """Customer e-mails waiting for a person: a manager, or the CSM who owns the customer, approves
    (maybe edited) or discards them, one by one on the review page or many at once."""

    customer_path = "customer__owner"
    # Few, short columns: with the subject as the link to the review page, the row fits the page
    # next to the filters (the stock id link led to a read-only form with no Approve button).
    list_display = ("review_link", "recipient", "playbook", "state", "queued")
    list_display_links = None

    class Media:
        css = {"all": ["workspace/workspace.css"]}  # the subject column's width

    list_filter = ("status", "reason", ("playbook", admin.RelatedOnlyFieldListFilter))
    search_fields = ("customer__name", "customer__company", "subject", "to")
    date_hierarchy = "created_at"
    list_select_related = ("customer", "playbook")
    fields = (
        "customer",
        "playbook",
        "execution",
        "step_key",
        "to",
        "subject",
        "body",
        "status",
        "reason",
        "is_edited",
        "created_at",
        "decided_by",
        "decided_at",
        "sent_at",
        "note",
    )
    readonly_fields = fields
    actions = ["approve_selected", "discard_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the engine queues them

    def has_delete_permission(self, request: HttpRequest, obj: EmailReview | None = None) -> bool:
        return False  # a decision is history; discarding is the way to drop one

    @admin.display(description="E-mail", ordering="subject")
    def review_link(self, obj: EmailReview) -> str:
        action = "Review" if obj.status == EmailReview.Status.PENDING else "View"
        return format_html(
            '<a href="{}"><strong>{}</strong></a> <span class="quiet">· {}</span>',
            reverse("admin:playbooks_emailreview_review", args=[obj.pk]),
            obj.subject,
            action,
        )

    @admin.display(description="Customer", ordering="customer__name")
    def recipient(self, obj: EmailReview) -> str:
        return format_html('{}<div class="quiet">{}</div>', obj.customer.name, obj.to)

    @admin.display(description="Status", ordering="status")
    def state(self, obj: EmailReview) -> str:
        why = "daily cap reached" if obj.reason == EmailReview.Reason.DAILY_CAP else "waits for review"
        detail = why if obj.status == EmailReview.Status.PENDING else ""
        return format_html('{}<div class="quiet">{}</div>', obj.get_status_display(), detail)

    @admin.display(description="Queued", ordering="created_at")
    def queued(self, obj: EmailReview) -> str:
        return date_format(timezone.localtime(obj.created_at), "j M H:i")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Customer e-mails for review", **(extra_context or {})})

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/review/", wrap(self.review_view), name="playbooks_emailreview_review"),
            *super().get_urls(),
        ]

    def _decide(self, request: HttpRequest, queryset: QuerySet, approve: bool) -> None:
        answer = approvals.email_reviews_decide(
            user=request.user, review_ids=list(queryset.values_list("pk", flat=True)), approve=approve
        )
        verb = "Approved" if approve else "Discarded"
        self.message_user(request, f"{verb} {len(answer['done'])} e-mail(s).", messages.SUCCESS)
        if answer["problems"]:
            text = "; ".join(f"#{pk}: {problem}" for pk, problem in list(answer["problems"].items())[:10])
            self.message_user(request, text, messages.WARNING)

    @admin.action(description="Approve and send the selected e-mails", permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Discard the selected e-mails", permissions=["change"])
    def discard_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, approve=False)

    def review_view(self, request: HttpRequest, pk: int) -> TemplateResponse | HttpResponse:
        """The preview with an editable subject and body, and Approve / Discard."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        review = get_object_or_404(self.get_queryset(request), pk=pk)
        pending = review.status == EmailReview.Status.PENDING
        form = ReviewForm(request.POST or None, initial={"subject": review.subject, "body": review.body})
        message = ""
        if request.method == "POST":
            if not self.has_change_permission(request, review):
                raise PermissionDenied
            try:
                if "_discard" in request.POST:
                    approvals.email_review_discard(user=request.user, review_id=review.pk)
                    self.message_user(request, f"Discarded the e-mail to {review.to}.", messages.SUCCESS)
                    return redirect(reverse("admin:playbooks_emailreview_changelist") + "?status__exact=pending")
                if form.is_valid():
                    approvals.email_review_approve(user=request.user, review_id=review.pk, **form.cleaned_data)
                    self.message_user(request, f"Approved: the e-mail to {review.to} is being sent.", messages.SUCCESS)
                    return redirect(reverse("admin:playbooks_emailreview_changelist") + "?status__exact=pending")
            except (ConflictError, NotFoundError) as exc:
                message = str(exc)
        return TemplateResponse(
            request,
            "admin/playbooks/email_review.html",
            {
                **self.admin_site.each_context(request),
                "title": f"E-mail to {review.customer.name}",
                "review": review,
                "form": form if pending and self.has_change_permission(request, review) else None,
                "message": message,
                "opts": self.opts,
            },
        )


@admin.register(TriggerRule)
class TriggerRuleAdmin(TriggerRuleFormAdmin, PortfolioScopedAdmin):
    """Trigger rules and their go-ahead. Book-wide reference data like the playbooks they belong to
    (CSMs already read them inline on the playbook page); the CSM group has no permission on this
    page, whose summaries count the whole book. A rule enrols by itself only after a manager's
    go-ahead on the dry-run summary shown on its go-ahead page. The form, the live match count and
    the plain-English list are `admin_rules.TriggerRuleFormAdmin`."""

    book_wide = True
    list_filter = ("kind", "is_active", ("playbook", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("playbook", "approved_by")
    readonly_fields = ("automation", "approved_by", "approved_at", "approval_text")

    @admin.display(description="Automatic enrolment")
    def automation(self, obj: TriggerRule) -> str:
        return automation_status(obj)

    @admin.display(description="Go-ahead")
    def go_ahead_link(self, obj: TriggerRule) -> str:
        url = reverse("admin:playbooks_triggerrule_go_ahead", args=[obj.pk])
        return format_html('<a href="{}">Dry run and go-ahead</a>', url)

    def save_model(self, request: HttpRequest, obj: TriggerRule, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        pause_if_switched_on(form)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/go-ahead/", wrap(self.go_ahead_view), name="playbooks_triggerrule_go_ahead"),
            *super().get_urls(),
        ]

    def go_ahead_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        """What the rule would do now ("would enrol N customers, e-mail M"); POST gives the go-ahead."""
        if not (self.has_view_permission(request) and approvals.is_manager(request.user)):
            raise PermissionDenied
        rule = get_object_or_404(self.get_queryset(request).select_related("playbook"), pk=pk)
        message = ""
        if request.method == "POST":
            try:
                rule = approvals.trigger_rule_approve(user=request.user, rule_id=rule.pk)
                summary = rule.approval_summary
                message = f"Go-ahead given: the rule {summary['text']} now, and enrols by itself from here on."
            except (ConflictError, NotFoundError) as exc:
                message = str(exc)
        preview = selectors.rule_preview(user=request.user, rule=rule)
        message = message or f"{automation_status(rule)}. Dry run now: {preview.text}. Nothing was written."
        return TemplateResponse(
            request,
            PAGE,
            {
                **self.admin_site.each_context(request),
                "title": f"Go-ahead: {rule.playbook.name} — {rule.get_kind_display()}",
                "form": None if rules.is_approved(rule) else forms.Form(),
                "submit": f"Give the go-ahead ({preview.text})",
                "message": message,
                "tables": [
                    {
                        "title": "Dry run",
                        "headers": ["Matched", "Would enrol", "Would e-mail", "Holdout share", "E-mails auto-sent"],
                        "rows": [
                            [
                                preview.matched,
                                preview.would_enrol,
                                preview.would_email,
                                preview.playbook.holdout_share,
                                "yes" if preview.playbook.auto_send_customer_emails else "no (review queue)",
                            ]
                        ],
                    }
                ],
            },
        )
