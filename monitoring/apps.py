from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring and maintenance"

    def ready(self) -> None:
        from monitoring import celery_context  # noqa: F401  (connects the request-id signals)
        from monitoring.metrics import install

        install()
