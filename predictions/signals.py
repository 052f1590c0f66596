"""What the predictions app tells other apps. Kept apart from the scoring code so that a listener
connecting at start-up (playbooks) does not load the model stack in every process."""

from django.dispatch import Signal

# Sent after a scoring run commits: `run`, and `customer_ids` (None for the whole book).
customers_scored = Signal()
