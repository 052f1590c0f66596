from django.apps import AppConfig


class ChurnshieldConfig(AppConfig):
    name = "churnshield"
    verbose_name = "ChurnShield"

    def ready(self) -> None:
        from churnshield.auth import schema  # noqa: F401  (registers the OpenAPI auth extension)
