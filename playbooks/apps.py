from django.apps import AppConfig

from core import events
from core.enqueue import enqueue


class PlaybooksConfig(AppConfig):
    name = "playbooks"

    def ready(self) -> None:
        events.subscribe(events.CustomersScored, _after_scoring)
        events.subscribe(events.PaymentFailed, _after_payment_failed)


def _after_scoring(event: events.CustomersScored) -> None:
    """After a scoring run commits: record the outcomes its predictions matured (the proof's risk
    change) and evaluate the rules, for the customers it scored (set-based).

    A broker outage is logged, not raised (the prediction is committed and answered); the next
    scoring of those customers records and evaluates again."""
    # Imported here: apps.py loads before the app registry is ready, and the tasks import models.
    from playbooks.tasks import act_on_scores

    enqueue(act_on_scores, event.customer_ids)


def _after_payment_failed(event: events.PaymentFailed) -> None:
    """A payment newly failed (synced, or recorded by hand): Payment Recovery-style rules enrol at once."""
    from playbooks.tasks import evaluate_trigger_rules  # as above: tasks import models

    enqueue(evaluate_trigger_rules, [event.customer_id], ["failed_payment"])
