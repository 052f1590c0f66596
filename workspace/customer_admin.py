"""Customer 360: the customer list (with its *Enrol in a playbook…* action) and the customer page.

The admin is where the apps meet: the page shows each app's rows for one customer (predictions,
interventions, alerts, playbook executions) and logs touches through the interventions' services.
A CSM sees only the customers they own; managers, admins and viewers see the whole book (see
`customers.admin_scoping`). Health score and churn risk belong to the prediction engine and are
read-only here. Registered by `workspace.apps.WorkspaceAdminConfig.ready`.
"""

import datetime as dt
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html_join

from alerts.models import Alert
from core.auth.roles import Role, can_write
from customers.admin import OwnerFilter, PlanFilter, RiskLevelFilter
from customers.admin_scoping import (
    PortfolioScopedAdmin,
    changelist_link,
    is_csm,
)
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from customers.selectors import risk_level
from interventions.admin import InterventionInline, prepare_intervention
from interventions.models import Intervention
from interventions.services import activity_log
from playbooks.models import Playbook, PlaybookExecution
from playbooks.selectors import enrolment_preview
from playbooks.services import playbook_bulk_trigger
from predictions.models import ChurnPrediction
from workspace.selectors import customer_360


def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


class CustomerForm(forms.ModelForm):
    """Identity fields are one line each (they are TextFields, which Django draws as textareas)."""

    class Meta:
        model = Customer
        fields = (
            "name",
            "email",
            "company",
            "plan",
            "mrr",
            "is_active",
            "owner",
            "signup_date",
            "last_login",
            "churned_at",
            "nps_score",
            "support_tickets",
            "feature_usage",
        )
        widgets = {name: forms.TextInput(attrs={"size": 40}) for name in ("name", "email", "company", "plan")}


class ActivityForm(forms.Form):
    """Log a touch from the customer page: what it was, what was said, and an optional follow-up."""

    activity = forms.ChoiceField(choices=Intervention.Activity.choices, initial=Intervention.Activity.CALL)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What was said, what was agreed"}))
    follow_up = forms.DateField(
        required=False, label="Follow up on", widget=forms.DateInput(attrs={"type": "date"}), help_text="optional"
    )


class EnrolForm(forms.Form):
    playbook = forms.ModelChoiceField(
        queryset=Playbook.objects.filter(is_active=True).order_by("name"), help_text="Active playbooks only."
    )


@admin.register(Customer)
class CustomerAdmin(PortfolioScopedAdmin):
    customer_path = "owner"
    actions = ("enrol_in_playbook",)
    enrol_template = "admin/customers/customer/enrol_in_playbook.html"
    form = CustomerForm
    change_form_template = "admin/customers/customer/change_form.html"
    list_display = (
        "name",
        "company",
        "plan",
        "mrr",
        "health_score",
        "risk",
        "risk_band",
        "open_interventions",
        "owner_name",
        "is_active",
        "last_login",
    )
    # Signed up in a range rather than a date hierarchy: the hierarchy's year links cost a
    # DISTINCT over the signup dates of every row the list shows, on every page view.
    list_filter = (
        RiskLevelFilter,
        "is_active",
        ("plan", PlanFilter),
        ("signup_date", admin.DateFieldListFilter),
        ("owner", OwnerFilter),
    )
    search_fields = ("name", "email", "company", "external_id")
    list_select_related = ("owner",)
    export_values = {"risk": "churn_risk"}  # the probability, not "12.5%"
    readonly_fields = (
        "id",
        "health_score",
        "risk",
        "risk_band",
        "external_id",
        "created_at",
        "updated_at",
        "related_records",
        "usage",
    )
    # Sessions and predictions are on the page as the timeline (a row a day) and the trend chart.
    inlines = (InterventionInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        open_work = (
            Intervention.objects.filter(customer=OuterRef("pk"), status__in=Intervention.OPEN_STATUSES)
            .order_by()
            .values("customer")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(open_interventions_count=Coalesce(Subquery(open_work), Value(0), output_field=IntegerField()))
        )

    def get_fieldsets(self, request: HttpRequest, obj: Customer | None = None) -> list[tuple[str | None, dict]]:
        fieldsets: list[tuple[str | None, dict]] = [
            (None, {"fields": ("name", "email", "company", "plan", "mrr", "is_active", "owner")}),
            ("Dates", {"classes": ("collapse",), "fields": ("signup_date", "last_login", "churned_at")}),
            (
                "Signals",
                {
                    "description": "Health score and churn risk are computed by the prediction engine.",
                    "fields": (
                        "health_score",
                        "risk",
                        "risk_band",
                        "nps_score",
                        "support_tickets",
                        # The product reports usage; on a customer's page it reads as figures, not JSON.
                        "usage" if obj is not None else "feature_usage",
                    ),
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("Records", {"fields": ("related_records",)}))
            fieldsets.append(
                ("System", {"classes": ("collapse",), "fields": ("id", "external_id", "created_at", "updated_at")})
            )
        return fieldsets

    def has_enrol_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and can_write(request.user)

    @admin.action(description="Enrol in a playbook…", permissions=["enrol"])
    def enrol_in_playbook(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        """A confirmation page (as Django's delete_selected): choose the playbook, see what enrolling
        would do, then confirm. The queryset is already the user's portfolio; the service checks again."""
        form = EnrolForm(request.POST if "playbook" in request.POST else None)
        customer_ids = list(queryset.values_list("pk", flat=True))
        preview = None
        if form.is_valid():
            playbook = form.cleaned_data["playbook"]
            # Only the playbook whose preview the user has read (not one chosen after it) is confirmed.
            if request.POST.get("confirm") == "yes" and request.POST.get("previewed") == str(playbook.pk):
                answer = playbook_bulk_trigger(
                    user=request.user, playbook_id=playbook.pk, customer_ids=customer_ids, use_holdout=True
                )
                held_out = PlaybookExecution.objects.filter(pk__in=answer.execution_ids, is_holdout=True).count()
                self.message_user(
                    request,
                    f"{playbook.name}: enrolled {answer.enrolled} of {answer.requested} customers "
                    f"({held_out} of them held out); skipped {len(answer.skipped)}.",
                    messages.SUCCESS,
                )
                return None  # back to the changelist
            preview = enrolment_preview(user=request.user, playbook=playbook, customer_ids=customer_ids)
        context = {
            **self.admin_site.each_context(request),
            "title": "Enrol in a playbook",
            "opts": self.opts,
            "form": form,
            "preview": preview,
            "queryset": queryset,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "count": len(customer_ids),
        }
        return TemplateResponse(request, self.enrol_template, context)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/log-activity/", wrap(self.log_activity_view), name="customers_customer_log_activity"
            ),
            *super().get_urls(),
        ]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Customer | None = None,
    ) -> HttpResponse:
        if obj is not None:
            # The customer 360 above the form, for the customer the change view has just loaded
            # within the user's portfolio (get_object: 404 outside it), not loaded a second time.
            context.update(
                {
                    "workspace": customer_360(user=request.user, customer=obj, show=request.GET.get("timeline")),
                    "activity_form": ActivityForm(),
                    "can_log_activity": self._may_log_activity(request),
                    "title": f"{obj.name} · {obj.company}" if obj.company else obj.name,
                    "subtitle": None,
                }
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _may_log_activity(self, request: HttpRequest) -> bool:
        return can_write(request.user) and request.user.has_perm("interventions.add_intervention")

    def log_activity_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: log a call, e-mail, meeting, QBR or note (and its follow-up) through the service."""
        customer = self.get_object(request, unquote(object_id))  # 404 outside the portfolio
        page = reverse("admin:customers_customer_change", args=[customer.pk])
        if request.method != "POST":
            return HttpResponseRedirect(page)
        if not self._may_log_activity(request):
            raise PermissionDenied
        form = ActivityForm(request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{form[name].label}: {' '.join(e)}" for name, e in form.errors.items())
            self.message_user(request, f"Activity not logged. {errors}", messages.ERROR)
            return HttpResponseRedirect(page)
        follow_up = form.cleaned_data["follow_up"]
        touch, task = activity_log(
            user=request.user,
            customer_id=customer.pk,
            activity=form.cleaned_data["activity"],
            notes=form.cleaned_data["notes"],
            # A follow-up is due at the start of the working day it names.
            follow_up_at=timezone.make_aware(dt.datetime.combine(follow_up, dt.time(9))) if follow_up else None,
        )
        done = f"{touch.get_activity_display()} logged"
        if task is not None:
            done += f"; follow-up due {follow_up:%d %b %Y}"
        self.message_user(request, f"{done}.", messages.SUCCESS)
        return HttpResponseRedirect(page)

    def get_readonly_fields(self, request: HttpRequest, obj: Customer | None = None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        # Reassigning accounts is a manager's call: a CSM cannot give away or take a customer.
        return (*readonly, "owner") if is_csm(request) else readonly

    def get_list_filter(self, request: HttpRequest) -> tuple:
        filters = tuple(super().get_list_filter(request))
        if not is_csm(request):
            return filters
        # A CSM owns every row they see: an owner filter would only list themselves.
        return tuple(f for f in filters if not (isinstance(f, tuple) and f[0] == "owner"))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> ModelChoiceField | None:
        if db_field.name == "owner":
            # Accounts are owned by people who work them, not by viewers or role-less accounts.
            kwargs["queryset"] = (
                get_user_model()
                .objects.filter(
                    Q(is_superuser=True) | Q(groups__name__in=[Role.ADMIN, Role.MANAGER, Role.CSM]), is_active=True
                )
                .distinct()
                .order_by("username")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Interventions added or completed inline follow the same rules as on their own page."""
        if formset.model is not Intervention:
            super().save_formset(request, form, formset, change)
            return
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            obj.delete()
        for obj in instances:
            prepare_intervention(obj, request.user)
            obj.save()
        formset.save_m2m()

    @admin.display(description="Churn risk", ordering="churn_risk")
    def risk(self, obj: Customer) -> str:
        return _percent(obj.churn_risk)

    @admin.display(description="Risk level")
    def risk_band(self, obj: Customer) -> str:
        return risk_level(float(obj.churn_risk)) if obj.churn_risk is not None else "—"

    @admin.display(description="Open work", ordering="open_interventions_count")
    def open_interventions(self, obj: Customer) -> int:
        return getattr(obj, "open_interventions_count", 0)

    @admin.display(description="Owner", ordering="owner__username")
    def owner_name(self, obj: Customer) -> str:
        owner = obj.owner
        return (owner.get_full_name() or owner.get_username()) if owner else "—"

    @admin.display(description="Feature usage")
    def usage(self, obj: Customer) -> str:
        usage = obj.feature_usage if isinstance(obj.feature_usage, dict) else {}
        if not usage:
            return "No usage reported yet"
        shown = (
            (str(key).replace("_", " "), value if isinstance(value, (int, float, str)) else json.dumps(value))
            for key, value in sorted(usage.items())
        )
        return format_html_join(" · ", "{}: <strong>{}</strong>", shown)

    @admin.display(description="All records")
    def related_records(self, obj: Customer) -> str:
        """Links to the full, filtered lists (two counts, so the page stays a fixed number of queries)."""
        if obj.pk is None:
            return "—"
        sessions = UserSession.objects.filter(customer=obj).count()
        interventions = Intervention.objects.filter(customer=obj).count()
        links = [
            (UserSession, f"{sessions} sessions"),
            (Intervention, f"{interventions} interventions"),
            (SupportTicket, "support tickets"),
            (NpsResponse, "NPS responses"),
            (BillingEvent, "billing events"),
            (ChurnPrediction, "predictions"),
            (Alert, "alerts"),
            (PlaybookExecution, "playbook executions"),
        ]
        return format_html_join(
            " · ", "{}", ((changelist_link(model, label, customer__id__exact=obj.pk),) for model, label in links)
        )
