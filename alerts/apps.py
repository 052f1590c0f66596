from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self) -> None:
        from alerts.selectors import alert_events
        from customers.timeline import register_timeline_source

        register_timeline_source(alert_events)
