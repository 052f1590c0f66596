from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self) -> None:
        # Imported here: apps.py loads while the app registry is being built, before models can be.
        from customers.selectors import customer_fact_events
        from customers.timeline import register_timeline_source

        register_timeline_source(customer_fact_events)
        from customers import admin_renewals  # noqa: F401  (registering the renewals admin pages needs models)
