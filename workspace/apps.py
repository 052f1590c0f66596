from django.contrib.admin.apps import AdminConfig


class WorkspaceAdminConfig(AdminConfig):
    """`django.contrib.admin` with the workspace site (`workspace.site`) as `admin.site`."""

    default_site = "workspace.site.WorkspaceAdminSite"

    def ready(self) -> None:
        super().ready()  # every app's admin module
        # The workspace's own admin pages. This config is django.contrib.admin's (its module is not
        # `workspace`), so autodiscovery does not import them.
        from workspace import customer_admin  # noqa: F401
