"""Admin for predictions, churn causes and portfolio snapshots.

All three are written by the scoring batch, so the admin shows them but does not let anyone
type in a prediction or a snapshot (the history must stay what the model produced).
"""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from churnshield.admin_scoping import (
    PortfolioScopedAdmin,
    ReadOnlyTabularInline,
    is_csm,
    latest_rows_formset,
)
from predictions.models import (
    ChurnCause,
    ChurnPrediction,
    HealthWeights,
    ModelVersion,
    PortfolioSnapshot,
    PredictionRun,
)
from predictions.selectors import churn_cause_rows


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


@admin.register(ModelVersion)
class ModelVersionAdmin(EngineWrittenAdmin):
    """The model registry: versions, their status and metrics (written by training, read here).

    Book-wide plumbing (metrics over every customer): closed to CSMs, as every page without a scope.
    """

    list_display = ("version", "kind", "status", "roc_auc", "baseline_roc_auc", "ece", "trained_at")
    list_filter = ("status", "kind")
    search_fields = ("version", "status_reason")
    date_hierarchy = "trained_at"
    exclude = ("artifact",)
    readonly_fields = (
        "version",
        "kind",
        "status",
        "status_reason",
        "trained_at",
        "as_of",
        "feature_names",
        "params",
        "training_window",
        "metrics",
        "baseline_metrics",
        "importance",
    )

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


@admin.register(HealthWeights)
class HealthWeightsAdmin(PortfolioScopedAdmin):
    """One row: the health score's weights. Only managers and admins may change them."""

    book_wide = True

    list_display = ("__str__", "usage", "engagement", "support", "nps", "billing", "tenure", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not HealthWeights.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
