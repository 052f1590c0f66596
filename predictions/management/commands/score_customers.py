"""Score every active customer with the champion model (the daily batch, from a shell)."""

from typing import Any

from django.core.management.base import BaseCommand

from predictions.models import PredictionRun
from predictions.services.scoring import score_customers


class Command(BaseCommand):
    help = "Run the scoring batch now (idempotent per day unless --run-key is given)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--run-key", default=None, help="Idempotency key (default batch:<today>)")

    def handle(self, *args: Any, **options: Any) -> None:
        run = score_customers(trigger=PredictionRun.Trigger.BATCH, run_key=options["run_key"])
        self.stdout.write(
            f"{run.run_key}: {run.customers_scored} customers scored with {run.model_version.version}, "
            f"{run.risk_rises} risk rises alerted, timings {run.timings}"
        )
