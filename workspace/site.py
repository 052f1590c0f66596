"""The admin site: its index is the CSM's home (cockpit); Django's list of apps moves to /admin/apps/;
/admin/reports/ draws the reports (workspace/reports.py)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import SimpleLazyObject

from core.auth.roles import role_of
from core.exports import ChangelistExportMixin
from workspace.reports import reports
from workspace.selectors import cockpit


class WorkspaceAdminSite(admin.AdminSite):
    """Django's AdminSite whose home is a workspace: at-risk customers, work due, alerts, the team."""

    index_template = "admin/cockpit.html"
    index_title = "Home"
    site_header = "ChurnShield admin"
    site_title = "ChurnShield admin"

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        """Every changelist, ours or a third-party app's, gets the CSV and XLSX exports."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, ChangelistExportMixin):
            admin_class = type(
                admin_class.__name__,
                (ChangelistExportMixin, admin_class),
                {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
            )
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self) -> list[URLPattern]:
        return [
            path("apps/", self.admin_view(self.apps_view), name="apps"),
            path("reports/", self.admin_view(self.reports_view), name="reports"),
            *super().get_urls(),
        ]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """Django's list of apps and models, built when a page first reads it. Every admin page
        asks for it (the sidebar's `available_apps`, and the index's `app_list`), but the home and
        the customer 360 draw no sidebar, and building it checks permissions and reverses two URLs
        for each of fifty models: 10-20 ms a page for nothing."""
        return SimpleLazyObject(lambda: self._app_list(request, app_label))  # type: ignore[return-value]

    def _app_list(self, request: HttpRequest, app_label: str | None) -> list[dict[str, Any]]:
        """Django's apps, led by the workspace's own pages (the sidebar and the list of all pages)."""
        apps = super().get_app_list(request, app_label)
        if app_label is not None or role_of(request.user) is None:
            return apps
        url = reverse("admin:reports", current_app=self.name)
        reports_page = {"name": "Reports", "object_name": "Reports", "admin_url": url, "view_only": True, "perms": {}}
        workspace = {
            "name": "Workspace",
            "app_label": "workspace",
            "app_url": url,
            "has_module_perms": True,
            "models": [reports_page],
        }
        return [workspace, *apps]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        # A signed-in account without a role sees no customer data anywhere, the home included.
        home = cockpit(user=request.user) if role_of(request.user) is not None else None
        context = {"cockpit": home, **(extra_context or {})}
        return super().index(request, context)

    def apps_view(self, request: HttpRequest) -> TemplateResponse:
        """Every page of the admin, as Django's own index lists them."""
        context = {
            **self.each_context(request),
            "title": "All pages",
            "subtitle": None,
            "app_list": self.get_app_list(request),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/index.html", context)

    def reports_view(self, request: HttpRequest) -> TemplateResponse:
        """Charts of the user's portfolio (a CSM) or the book (managers, admins, viewers)."""
        context = {
            **self.each_context(request),
            "title": "Reports",
            "subtitle": None,
            "reports": reports(user=request.user) if role_of(request.user) is not None else None,
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/reports.html", context)
