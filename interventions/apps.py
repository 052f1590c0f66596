from django.apps import AppConfig


class InterventionsConfig(AppConfig):
    name = "interventions"

    def ready(self) -> None:
        # Imported here: apps.py loads while the app registry is being built, before models can be.
        from customers.timeline import register_detail_section, register_timeline_source
        from interventions.selectors import intervention_events, open_intervention_count

        register_timeline_source(intervention_events)
        register_detail_section("openInterventions", open_intervention_count)
