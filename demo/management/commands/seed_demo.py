"""`manage.py seed_demo`: load a deterministic demo book of business (see demo)."""

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.models import Customer
from demo.generator import DemoDataError, generate
from playbooks.defaults import seed_default_playbooks


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--as-of must be YYYY-MM-DD, got {value!r}") from None


class Command(BaseCommand):
    help = "Generate a realistic, deterministic demo book of business (customers, activity, predictions…)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=500, help="Number of customers (default 500).")
        parser.add_argument("--seed", type=int, default=7, help="Random seed; same seed and as-of, same data.")
        parser.add_argument("--as-of", type=_date, default=None, help="Last day of history (default: today, UTC).")
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when any customer exists.")
        parser.add_argument(
            "--activity-scale", type=float, default=1.0, help="Multiplies the number of sessions (default 1.0)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and Customer.objects.exists():
            self.stdout.write("Customers exist already; not seeding (--if-empty).")
            return
        if options["customers"] < 1:
            raise CommandError("--customers must be at least 1")
        if options["activity_scale"] <= 0:
            raise CommandError("--activity-scale must be positive")
        # The default playbooks first: the demo's measured enrolments are drawn at their holdout share.
        self.stdout.write(f"Default playbooks: {seed_default_playbooks()}")
        started = time.perf_counter()
        try:
            counts = generate(
                customers=options["customers"],
                seed=options["seed"],
                as_of=options["as_of"],
                activity_scale=options["activity_scale"],
                progress=options["verbosity"] > 0,
            )
        except DemoDataError as error:
            raise CommandError(str(error)) from error
        elapsed = time.perf_counter() - started
        summary = ", ".join(f"{name}={count:,}" for name, count in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Seeded demo data in {elapsed:.1f}s: {summary}"))
