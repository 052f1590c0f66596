"""Admin for playbooks (book-wide) and their executions (scoped to the CSM's customers)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from churnshield.admin_scoping import PortfolioScopedAdmin, changelist_link
from playbooks.models import Playbook, PlaybookExecution


@admin.register(Playbook)
class PlaybookAdmin(PortfolioScopedAdmin):
    list_display = ("name", "is_active", "step_count", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "description")
    date_hierarchy = "created_at"
    fields = ("id", "name", "description", "steps", "is_active", "created_at", "executions")
    readonly_fields = ("id", "created_at", "executions")

    @admin.display(description="Steps")
    def step_count(self, obj: Playbook) -> int:
        return len(obj.steps) if isinstance(obj.steps, list) else 0

    @admin.display(description="Executions")
    def executions(self, obj: Playbook) -> str:
        """A link rather than a count: the changelist behind it shows only what the user may see."""
        if obj.pk is None:
            return "—"
        return changelist_link(PlaybookExecution, "Executions of this playbook", playbook__id__exact=obj.pk)


@admin.register(PlaybookExecution)
class PlaybookExecutionAdmin(PortfolioScopedAdmin):
    customer_path = "customer__owner"
    list_display = ("id", "playbook", "customer", "status", "started_at", "completed_at")
    list_filter = ("status", ("playbook", admin.RelatedOnlyFieldListFilter))
    search_fields = ("customer__name", "customer__company", "playbook__name")
    date_hierarchy = "started_at"
    list_select_related = ("playbook", "customer")
    autocomplete_fields = ("playbook", "customer")
    readonly_fields = ("id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PlaybookExecution]:
        return super().get_queryset(request).select_related("playbook", "customer")
