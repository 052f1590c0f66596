from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    name = "predictions"

    def ready(self) -> None:
        from customers.timeline import register_detail_section, register_timeline_source
        from predictions.selectors import latest_prediction_json, prediction_events

        register_timeline_source(prediction_events)
        register_detail_section("latestPrediction", latest_prediction_json)
