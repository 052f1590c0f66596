from django.apps import AppConfig


class ChurnshieldConfig(AppConfig):
    """The project: its templates, static files and the `sync_schedules` command."""

    name = "churnshield"
    verbose_name = "ChurnShield"
