from typing import Any

from django.apps import AppConfig

from churnshield.enqueue import enqueue, enqueue_on_commit


class PlaybooksConfig(AppConfig):
    name = "playbooks"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from customers.models import BillingEvent
        from integrations.hooks import register_payment_failed_handler
        from predictions.signals import customers_scored

        customers_scored.connect(_after_scoring, dispatch_uid="playbooks-after-scoring")
        # Failed payments: synced ones arrive through the data sync's hook (bulk writes send no
        # post_save); one saved by hand (admin, shell) through post_save.
        register_payment_failed_handler(_after_payment_failed)
        post_save.connect(_after_billing_event, sender=BillingEvent, dispatch_uid="playbooks-failed-payment")


def _after_scoring(sender: Any, run: Any, customer_ids: list[int] | None, **kwargs: Any) -> None:
    """After a scoring run commits: evaluate the rules for the customers it scored (set-based).

    A broker outage is logged, not raised (the prediction is committed and answered); the next
    scoring of those customers evaluates the rules again."""
    from playbooks.tasks import evaluate_trigger_rules

    enqueue(evaluate_trigger_rules, customer_ids)


def _after_payment_failed(event: Any) -> None:
    """The data sync applied a failed payment (called after its commit): evaluate the rules."""
    from playbooks.tasks import evaluate_trigger_rules

    enqueue(evaluate_trigger_rules, [event.customer_id], ["failed_payment"])


def _after_billing_event(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A failed payment (the data sync's canonical event) enrols Payment Recovery-style rules at once."""
    if not created or instance.kind != "payment_failed":
        return
    from playbooks.tasks import evaluate_trigger_rules

    enqueue_on_commit(evaluate_trigger_rules, [instance.customer_id], ["failed_payment"])
