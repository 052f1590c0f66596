from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    name = "predictions"

    def ready(self) -> None:
        # Imported here: apps.py loads while the app registry is being built, before models can be.
        from customers.selectors import register_risk_thresholds
        from customers.timeline import register_detail_section, register_timeline_source
        from predictions.api.renderers import latest_prediction_body
        from predictions.selectors import champion_risk_bands, latest_prediction, prediction_events

        register_risk_thresholds(champion_risk_bands)
        register_timeline_source(prediction_events)
        register_detail_section(
            "latestPrediction", lambda customer_id: latest_prediction_body(latest_prediction(customer_id))
        )
