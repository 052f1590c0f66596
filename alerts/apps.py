from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self) -> None:
        # Imported here: apps.py loads while the app registry is being built, before models can be.
        from alerts.selectors import alert_events
        from customers.timeline import register_timeline_source

        register_timeline_source(alert_events)

        # Live alert feed: signing out of the admin closes that user's sockets.
        from django.contrib.auth.signals import user_logged_out

        from alerts.realtime import on_user_logged_out

        user_logged_out.connect(on_user_logged_out, dispatch_uid="alerts.realtime.on_user_logged_out")
