from django.contrib.admin.apps import AdminConfig


class WorkspaceAdminConfig(AdminConfig):
    """`django.contrib.admin` with the workspace site (`workspace.site`) as `admin.site`."""

    default_site = "workspace.site.WorkspaceAdminSite"
