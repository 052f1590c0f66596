import logging

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring and maintenance"

    def ready(self) -> None:
        logging.captureWarnings(True)  # Python warnings become JSON log records, not raw stderr
        # Imported here: apps.py loads while the app registry is being built, before models can be.
        from monitoring import celery_context  # noqa: F401  (connects the request-id signals)
        from monitoring.metrics import install

        install()
