from django.apps import AppConfig


class ChurnshieldConfig(AppConfig):
    name = "churnshield"
    verbose_name = "ChurnShield"

    def ready(self) -> None:
        # Importing them registers the OpenAPI extensions (strict input fields, the auth schemes).
        import churnshield.api.schema
        import churnshield.auth.schema  # noqa: F401
