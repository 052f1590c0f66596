from typing import Any

from django.apps import AppConfig
from django.db import transaction


class PlaybooksConfig(AppConfig):
    name = "playbooks"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from customers.models import BillingEvent
        from integrations.hooks import register_payment_failed_handler
        from predictions.services.scoring import customers_scored

        customers_scored.connect(_after_scoring, dispatch_uid="playbooks-after-scoring")
        # Failed payments: synced ones arrive through the data sync's hook (bulk writes send no
        # post_save); one saved by hand (admin, shell) through post_save.
        register_payment_failed_handler(_after_payment_failed)
        post_save.connect(_after_billing_event, sender=BillingEvent, dispatch_uid="playbooks-failed-payment")


def _after_scoring(sender: Any, run: Any, customer_ids: list[int] | None, **kwargs: Any) -> None:
    """After a scoring run commits: evaluate the rules for the customers it scored (set-based)."""
    from playbooks.tasks import evaluate_trigger_rules

    evaluate_trigger_rules.delay(customer_ids)


def _after_payment_failed(event: Any) -> None:
    """The data sync applied a failed payment (called after its commit): evaluate the rules."""
    from playbooks.tasks import evaluate_trigger_rules

    evaluate_trigger_rules.delay([event.customer_id], ["failed_payment"])


def _after_billing_event(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A failed payment (the data sync's canonical event) enrols Payment Recovery-style rules at once."""
    if not created or instance.kind != "payment_failed":
        return
    from playbooks.tasks import evaluate_trigger_rules

    customer_id = instance.customer_id
    transaction.on_commit(lambda: evaluate_trigger_rules.delay([customer_id], ["failed_payment"]))
