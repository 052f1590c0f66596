"""Score every active customer with the champion model (the daily batch, from a shell)."""

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from predictions.management.commands.train_model import parse_as_of
from predictions.models import PredictionRun
from predictions.selectors import default_as_of
from predictions.services.scoring import score_customers


class Command(BaseCommand):
    help = "Run the scoring batch (idempotent per as-of day unless --run-key is given)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--run-key", default=None, help="Idempotency key (default batch:<as-of date>)")
        parser.add_argument(
            "--as-of", default=None, help="Score from facts up to this date, predictions dated then (default: now)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])
        if as_of is None:
            as_of, note = default_as_of(timezone.now())
            if note:
                self.stdout.write(note)
        run = score_customers(trigger=PredictionRun.Trigger.BATCH, run_key=options["run_key"], now=as_of)
        self.stdout.write(
            f"{run.run_key}: {run.customers_scored} customers scored as of {as_of:%Y-%m-%d} with "
            f"{run.model_version.version}, {run.risk_rises} risk rises alerted, timings {run.timings}"
        )
