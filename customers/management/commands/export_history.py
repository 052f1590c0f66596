"""Export the book (customers and their history) in the import's formats."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from customers.history.export import FORMATS, export_history


class Command(BaseCommand):
    help = "Write customers, subscriptions, user_sessions, support_tickets and nps_responses files into DIR."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("directory", type=Path, metavar="DIR")
        parser.add_argument("--format", choices=FORMATS, default="csv")

    def handle(self, *args: Any, **options: Any) -> None:
        written = export_history(directory=options["directory"], fmt=options["format"])
        for kind, count in written.items():
            self.stdout.write(f"{kind}.{options['format']}: {count} rows")
