from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self) -> None:
        from customers.selectors import customer_fact_events
        from customers.timeline import register_timeline_source

        register_timeline_source(customer_fact_events)
        from customers import admin_renewals  # noqa: F401  (registers the renewals admin pages)
