from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "ChurnShield core"

    def ready(self) -> None:
        # Importing them registers the OpenAPI extensions (strict input fields, the auth schemes).
        import core.api.schema
        import core.auth.schema  # noqa: F401
