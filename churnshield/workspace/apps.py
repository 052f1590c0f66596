from django.contrib.admin.apps import AdminConfig


class WorkspaceAdminConfig(AdminConfig):
    """`django.contrib.admin` with the workspace site (`churnshield.workspace.site`) as `admin.site`."""

    default_site = "churnshield.workspace.site.WorkspaceAdminSite"
