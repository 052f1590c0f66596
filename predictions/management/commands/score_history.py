"""Score the past with the champion: predictions as of earlier dates and the daily portfolio totals."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from predictions.services.backfill import score_history


class Command(BaseCommand):
    help = (
        "Score every customer as of past dates with the current champion (from the facts known then), "
        "replacing the predictions of that window before today, and redraw its daily portfolio snapshots. "
        "Raises no alert and starts no playbook. Run it after importing history or training a first model."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, default=365, help="How far back (default 365)")
        parser.add_argument("--every", type=int, default=7, help="Days between scored dates (default 7)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] < 1 or options["every"] < 1:
            raise CommandError("--days and --every must be at least 1.")
        counts = score_history(days=options["days"], every_days=options["every"])
        self.stdout.write(
            f"{counts['predictions']} predictions at {counts['checkpoints']} past dates (replacing "
            f"{counts['replaced']}), {counts['snapshots']} daily portfolio snapshots."
        )
