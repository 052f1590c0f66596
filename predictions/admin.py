"""Admin for predictions, churn causes, portfolio snapshots and the model registry.

All three are written by the scoring batch, so the admin shows them but does not let anyone
type in a prediction or a snapshot (the history must stay what the model produced).
"""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from core.auth.roles import Role, role_of
from core.exceptions import ConflictError
from customers.admin_scoping import (
    PortfolioScopedAdmin,
    ReadOnlyTabularInline,
    is_csm,
    latest_rows_formset,
)
from predictions.ml.rules import COMPONENTS
from predictions.model_card import model_card
from predictions.models import (
    ChurnCause,
    ChurnPrediction,
    HealthWeights,
    ModelVersion,
    ModelVersionChange,
    PortfolioSnapshot,
    PredictionRun,
)
from predictions.selectors import champion, churn_cause_rows, health_weights, health_weights_preview, previous_champion
from predictions.services import registry


def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _causes(top_causes: Any) -> str:
    """The causes of a prediction as one readable line (the JSON is a list of dicts or strings)."""
    if not isinstance(top_causes, list):
        return ""
    names = [
        str(cause.get("factor", cause.get("cause", cause))) if isinstance(cause, dict) else str(cause)
        for cause in top_causes
    ]
    return ", ".join(names[:5])


class ChurnPredictionInline(ReadOnlyTabularInline):
    """The latest few predictions on the customer page (the full history is on its own changelist)."""

    model = ChurnPrediction
    formset = latest_rows_formset(5)
    fields = ("prediction_date", "probability", "risk_level", "health_score", "causes", "model_version")
    readonly_fields = fields
    verbose_name_plural = "latest predictions"

    @admin.display(description="Churn probability")
    def probability(self, obj: ChurnPrediction) -> str:
        return _percent(obj.churn_probability)

    @admin.display(description="Top causes")
    def causes(self, obj: ChurnPrediction) -> str:
        return _causes(obj.top_causes)


class EngineWrittenAdmin(PortfolioScopedAdmin):
    """Rows the scoring batch writes: viewable (and deletable by those allowed), never added or edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(ChurnPrediction)
class ChurnPredictionAdmin(EngineWrittenAdmin):
    customer_path = "customer__owner"
    list_display = ("id", "customer", "probability", "risk_level", "health_score", "model_version", "prediction_date")
    list_filter = ("risk_level", "model_version")
    search_fields = ("customer__name", "customer__company", "customer__email", "model_version")
    date_hierarchy = "prediction_date"
    list_select_related = ("customer",)
    fields = (
        "id",
        "customer",
        "prediction_date",
        "churn_probability",
        "risk_level",
        "health_score",
        "top_causes",
        "model_version",
    )
    readonly_fields = fields
    show_full_result_count = False  # one row per scoring: a large table
    export_values = {"probability": "churn_probability"}

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChurnPrediction]:
        return super().get_queryset(request).select_related("customer")

    @admin.display(description="Churn probability", ordering="churn_probability")
    def probability(self, obj: ChurnPrediction) -> str:
        return _percent(obj.churn_probability)


def portfolio_cause_columns(user: Any) -> tuple[Callable[[ChurnCause], Any], ...]:
    """Impact, count and percent of each cause over the user's portfolio (one count for the page).

    The stored figures are counted over the whole book by the batch; a CSM gets the same causes
    recounted over their own customers' latest predictions, as `/api/churn-causes` answers them.
    """
    figures: dict[int, dict] | None = None

    def figure(obj: ChurnCause, key: str) -> Any:
        nonlocal figures
        if figures is None:
            figures = {row["id"]: row for row in churn_cause_rows(user=user)}
        return figures.get(obj.pk, {}).get(key, 0)

    @admin.display(description="impact")
    def impact(obj: ChurnCause) -> Any:
        return figure(obj, "impact")

    @admin.display(description="customers in your portfolio")
    def count(obj: ChurnCause) -> Any:
        return figure(obj, "count")

    @admin.display(description="percent of your portfolio")
    def percent(obj: ChurnCause) -> Any:
        return figure(obj, "percent")

    return impact, count, percent


@admin.register(ChurnCause)
class ChurnCauseAdmin(PortfolioScopedAdmin):
    """Causes are aggregated by the batch; only the wording (category, description) is curated.

    The list of causes is book-wide; the figures are not: a CSM sees them counted over their own
    portfolio (and no filter, order or timestamp that follows the book-wide counts).
    """

    book_wide = True
    list_display = ("cause", "category", "impact", "count", "percent", "updated_at")
    list_filter = ("category", "impact")
    search_fields = ("cause", "description")
    readonly_fields = ("count", "percent", "impact", "updated_at")
    fields = ("cause", "category", "description", "count", "percent", "impact", "updated_at")

    def get_list_display(self, request: HttpRequest) -> tuple:
        if is_csm(request):
            return ("cause", "category", *portfolio_cause_columns(request.user))
        return super().get_list_display(request)

    def get_list_filter(self, request: HttpRequest) -> tuple:
        return ("category",) if is_csm(request) else super().get_list_filter(request)

    def get_ordering(self, request: HttpRequest) -> tuple:
        return ("cause",) if is_csm(request) else super().get_ordering(request)

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> tuple:
        return ("cause", "category", "description") if is_csm(request) else super().get_fields(request, obj)


@admin.register(PortfolioSnapshot)
class PortfolioSnapshotAdmin(EngineWrittenAdmin):
    customer_path = "owner"
    list_display = (
        "date",
        "owner",
        "active_customers",
        "at_risk_customers",
        "average_risk",
        "mrr_sum",
        "churned_customers",
    )
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter),)
    date_hierarchy = "date"
    list_select_related = ("owner",)
    search_fields = ("owner__username", "owner__first_name", "owner__last_name")
    fields = (
        "date",
        "owner",
        "active_customers",
        "at_risk_customers",
        "risk_sum",
        "mrr_sum",
        "churned_customers",
    )
    readonly_fields = fields
    export_values = {"average_risk": lambda obj: obj.risk_sum / obj.active_customers if obj.active_customers else None}

    def get_list_filter(self, request: HttpRequest) -> tuple:
        # A CSM's snapshots are all their own: an owner filter would list only them.
        return () if is_csm(request) else super().get_list_filter(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PortfolioSnapshot]:
        return super().get_queryset(request).select_related("owner")

    @admin.display(description="Average risk")
    def average_risk(self, obj: PortfolioSnapshot) -> str:
        return _percent(obj.risk_sum / obj.active_customers) if obj.active_customers else "—"


class ChampionChangeForm(forms.Form):
    """The confirmation of a promotion or a roll back: the reason goes into the audit row."""

    note = forms.CharField(
        label="Why",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with your name and the time, and shown on both versions' model cards.",
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(EngineWrittenAdmin):
    """The model registry: each version's page is its model card, read from what training stored.

    Book-wide plumbing (metrics over every customer): closed to CSMs, as every page without a scope.
    The champion cannot be deleted (promote another version first); managers and admins promote a
    version or roll the champion back through a confirmation page, audited by the registry.
    """

    change_form_template = "admin/predictions/modelversion/change_form.html"
    confirm_template = "admin/predictions/modelversion/confirm_change.html"
    list_display = ("version", "kind", "status", "roc_auc", "baseline_roc_auc", "ece", "trained_at")
    list_filter = ("status", "kind")
    search_fields = ("version", "status_reason")
    date_hierarchy = "trained_at"
    fields = ("version", "kind", "status", "status_reason", "trained_at", "as_of")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return super().get_queryset(request).defer("artifact")

    @admin.display(description="ROC AUC")
    def roc_auc(self, obj: ModelVersion) -> Any:
        return (obj.metrics or {}).get("roc_auc")

    @admin.display(description="Baseline ROC AUC")
    def baseline_roc_auc(self, obj: ModelVersion) -> Any:
        return (obj.baseline_metrics or {}).get("roc_auc")

    @admin.display(description="ECE")
    def ece(self, obj: ModelVersion) -> Any:
        return (obj.metrics or {}).get("ece")

    # --- The champion is never deleted -------------------------------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        if obj is not None and obj.status == ModelVersion.Status.CHAMPION:
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        """The bulk delete's confirmation lists the champion as not deletable, and its POST is
        refused (Django's action raises PermissionDenied while anything is listed here)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        champions = [obj.version for obj in objs if obj.status == ModelVersion.Status.CHAMPION]
        if champions:
            perms_needed = {*perms_needed, f"the champion {', '.join(champions)} (promote another version first)"}
        return deleted, counts, perms_needed, protected

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.filter(status=ModelVersion.Status.CHAMPION).exists():
            raise PermissionDenied("The champion cannot be deleted.")
        super().delete_queryset(request, queryset)

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        if obj.status == ModelVersion.Status.CHAMPION:
            raise PermissionDenied("The champion cannot be deleted.")
        super().delete_model(request, obj)

    # --- The model card ----------------------------------------------------------------------

    def can_change_champion(self, request: HttpRequest) -> bool:
        """Managers and admins (never CSMs or viewers, whatever a group was given by mistake)."""
        return role_of(request.user) in (Role.ADMIN, Role.MANAGER) and request.user.has_perm(
            f"{self.opts.app_label}.change_{self.opts.model_name}"
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ModelVersion | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["model_card"] = model_card(obj)
            context["can_change_champion"] = self.can_change_champion(request)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/promote/", wrap(self.promote_view), name="predictions_modelversion_promote"),
            path("<int:pk>/roll-back/", wrap(self.roll_back_view), name="predictions_modelversion_roll_back"),
            *super().get_urls(),
        ]

    def _version_for_change(self, request: HttpRequest, pk: int) -> ModelVersion:
        if not (self.has_view_permission(request) and self.can_change_champion(request)):
            raise PermissionDenied
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def promote_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Confirm, then make this version the champion (the current one is retired)."""
        version = self._version_for_change(request, pk)
        current = champion()
        problem = f"{version.version} is already the champion." if current and current.pk == version.pk else ""
        return self._confirm(
            request,
            version,
            title=f"Promote {version.version} to champion",
            problem=problem,
            replaces=current,
            submit="Yes, promote it",
            act=lambda note: registry.model_version_promote(version_id=version.pk, by=request.user, note=note),
        )

    def roll_back_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Confirm, then put back the version this champion replaced."""
        version = self._version_for_change(request, pk)
        restores = previous_champion(version) if version.status == ModelVersion.Status.CHAMPION else None
        if version.status != ModelVersion.Status.CHAMPION:
            problem = f"{version.version} is not the champion: only the champion can be rolled back."
        elif restores is None:
            problem = f"No earlier champion is recorded for {version.version}: promote an earlier version instead."
        else:
            problem = ""
        return self._confirm(
            request,
            version,
            title=f"Roll back {version.version}",
            problem=problem,
            restores=restores,
            submit=f"Yes, roll back to {restores.version}" if restores else "",
            act=lambda note: registry.model_version_roll_back(by=request.user, note=note),
        )

    def _confirm(
        self,
        request: HttpRequest,
        version: ModelVersion,
        *,
        title: str,
        problem: str,
        submit: str,
        act: Callable[[str], ModelVersionChange],
        **context: Any,
    ) -> HttpResponse:
        form = ChampionChangeForm(request.POST or None)
        if request.method == "POST" and not problem and form.is_valid():
            try:
                change = act(form.cleaned_data["note"])
            except ConflictError as exc:
                problem = str(exc)
            else:
                self.log_change(request, change.version, f"{change.get_action_display()}: {change.reason}")
                self.message_user(
                    request,
                    f"The champion is now {change.version.version}; the book is being scored with it.",
                    messages.SUCCESS,
                )
                return redirect(reverse("admin:predictions_modelversion_change", args=[change.version.pk]))
        return TemplateResponse(
            request,
            self.confirm_template,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "opts": self.opts,
                "version": version,
                "form": None if problem else form,
                "problem": problem,
                "submit": submit,
                **context,
            },
        )


@admin.register(ModelVersionChange)
class ModelVersionChangeAdmin(EngineWrittenAdmin):
    """Who made which version champion, replacing which, when and why (never edited or deleted)."""

    list_display = ("changed_at", "action", "version", "previous", "who", "reason")
    list_filter = ("action",)
    search_fields = ("version__version", "previous__version", "reason")
    date_hierarchy = "changed_at"
    list_select_related = ("version", "previous", "changed_by")
    fields = ("changed_at", "action", "version", "previous", "changed_by", "reason")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersionChange]:
        return super().get_queryset(request).defer("version__artifact", "previous__artifact")

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="By", ordering="changed_by__username")
    def who(self, obj: ModelVersionChange) -> str:
        return obj.changed_by.get_username() if obj.changed_by else "training (automatic)"


@admin.register(PredictionRun)
class PredictionRunAdmin(EngineWrittenAdmin):
    """Scoring runs count the whole book (customers scored, risk rises): closed to CSMs."""

    list_display = ("run_key", "trigger", "status", "model_version", "customers_scored", "risk_rises", "started_at")
    list_filter = ("status", "trigger")
    search_fields = ("run_key",)
    date_hierarchy = "started_at"
    list_select_related = ("model_version",)
    readonly_fields = (
        "run_key",
        "trigger",
        "status",
        "model_version",
        "started_at",
        "finished_at",
        "customers_scored",
        "risk_rises",
        "timings",
        "error",
    )


def weight_shares(weights: dict[str, float]) -> dict[str, float]:
    """Each weight's share of the total, in percent (what the weights mean: only ratios count)."""
    total = sum(max(value, 0.0) for value in weights.values())
    return {name: (100 * max(value, 0.0) / total if total > 0 else 0.0) for name, value in weights.items()}


class HealthWeightsForm(forms.ModelForm):
    """The weights, each with its share of the total next to it (of the values on the page)."""

    class Meta:
        model = HealthWeights
        fields = COMPONENTS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        values = {}
        for name in COMPONENTS:
            raw = self.data.get(name) if self.is_bound else self.initial.get(name)
            try:
                values[name] = float(raw)
            except (TypeError, ValueError):
                return  # the form's errors say what is wrong; no shares of a wrong total
        for name, share in weight_shares(values).items():
            self.fields[name].help_text = f"{share:.1f}% of the total"

    def weights(self) -> dict[str, float]:
        return {name: float(self.cleaned_data[name]) for name in COMPONENTS}


@admin.register(HealthWeights)
class HealthWeightsAdmin(PortfolioScopedAdmin):
    """One row: the health score's weights. Only managers and admins may change them.

    The change page previews a change before it is saved: "Preview" scores the active customers
    with the weights in the form (predictions.selectors.health_weights_preview) and saves nothing."""

    book_wide = True
    form = HealthWeightsForm
    change_form_template = "admin/predictions/healthweights/change_form.html"
    list_display = ("__str__", "usage", "engagement", "support", "nps", "billing", "tenure", "updated_at")
    readonly_fields = ("shares",)
    fieldsets = (
        (
            None,
            {
                "description": "The health score (0–100) is the weighted mean of six components, each 0–100: "
                "usage, engagement, support, NPS, billing and tenure. Only the ratios between the weights "
                "matter, so each weight is shown as its share of the total.",
                "fields": (*COMPONENTS, "shares"),
            },
        ),
    )

    @admin.display(description="Saved shares")
    def shares(self, obj: HealthWeights | None) -> str:
        weights = obj.as_dict() if obj is not None and obj.pk else health_weights()
        return " · ".join(f"{name} {share:.1f}%" for name, share in weight_shares(weights).items())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not HealthWeights.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if request.method == "POST" and "_preview" in request.POST:
            return self._preview_view(request, object_id, form_url)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _preview_view(self, request: HttpRequest, object_id: str | None, form_url: str) -> HttpResponse:
        """The change (or add) page again, with the posted weights and their preview; nothing saved.
        As Django's own change form is assembled (ModelAdmin._changeform_view), without the save."""
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if not (self.has_change_permission(request, obj) if obj else self.has_add_permission(request)):
            raise PermissionDenied
        form = self.get_form(request, obj, change=obj is not None)(request.POST, instance=obj)
        preview = health_weights_preview(user=request.user, weights=form.weights()) if form.is_valid() else None
        fieldsets = self.get_fieldsets(request, obj)
        admin_form = helpers.AdminForm(
            form, list(fieldsets), {}, self.get_readonly_fields(request, obj), model_admin=self
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Change health score weights" if obj else "Add health score weights",
            "subtitle": str(obj) if obj else None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "weights_preview": preview,
        }
        return self.render_change_form(
            request, context, add=obj is None, change=obj is not None, obj=obj, form_url=form_url
        )
