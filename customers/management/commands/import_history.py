"""Import a company's history (customers, sessions or events, tickets, NPS, subscriptions) from files."""

import datetime as dt
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from customers.history.kinds import KINDS
from customers.history.services import ImportError_, import_history, load_mapping

SHOWN_PROBLEMS = 50  # per file, on the terminal


class _Bar(tqdm):
    """A tqdm bar of bytes read that shows the rows read beside it."""

    def rows(self, n: int, *, writing: bool = False) -> None:
        self.set_postfix_str(f"{n:,} rows" + (", writing" if writing else ""))


class Command(BaseCommand):
    help = (
        "Import history files (CSV, CSV.gz, JSON Lines, Parquet): one file per kind, named after it"
        " (customers, user_sessions, events, support_tickets, nps_responses, subscriptions). See"
        " docs/importing-history.md."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count, write nothing")
        parser.add_argument("--kind", choices=list(KINDS), help="The kind of every file (default: from its name)")
        parser.add_argument("--mapping", type=Path, help="JSON or TOML file: {kind: {their column: our column}}")
        parser.add_argument(
            "--on-error",
            choices=["reject", "skip"],
            default="reject",
            help="reject: a file with a bad row imports nothing (default); skip: import the good rows",
        )
        parser.add_argument("--timezone", default="UTC", help="Zone of naive timestamps (default UTC)")
        parser.add_argument("--encoding", default="utf-8", help="Text encoding of CSV/JSON Lines (default utf-8)")
        parser.add_argument("--rescore", action="store_true", help="Run one batch scoring after the import")
        parser.add_argument("--no-progress", action="store_true", help="No progress bars")

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(path: Path, size: int) -> _Bar:
            return _Bar(
                total=size,
                desc=path.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=options["no_progress"] or None,
                file=self.stderr._out,
            )

        try:
            mapping = load_mapping(options["mapping"]) if options["mapping"] else None
            result = import_history(
                paths=[Path(p) for p in options["paths"]],
                kind=options["kind"],
                mapping=mapping,
                on_error=options["on_error"],
                tz=options["timezone"],
                encoding=options["encoding"],
                dry_run=options["dry_run"],
                progress=progress,
            )
        except ImportError_ as error:
            raise CommandError(str(error)) from None
        for f in result.files:
            name = Path(f.path).name
            if f.unknown_columns:
                self.stderr.write(f"{name}: ignored unknown column(s): {', '.join(f.unknown_columns)}")
            for problem in f.problems[:SHOWN_PROBLEMS]:
                self.stderr.write(str(problem))
            if len(f.problems) > SHOWN_PROBLEMS or f.rejected > len(f.problems):
                self.stderr.write(f"{name}: … {f.rejected} rejected row(s) in all")
            state = "dry run" if result.dry_run else "imported" if f.written else "NOT imported"
            self.stdout.write(
                f"{name} ({f.kind}): {f.rows} rows - inserted {f.inserted}, updated {f.updated},"
                f" unchanged {f.unchanged}, rejected {f.rejected} [{state}]" + (f" - {f.fatal}" if f.fatal else "")
            )
        self.stdout.write("Summary" + (" (dry run: nothing written)" if result.dry_run else "") + ":")
        for kind, t in result.totals().items():
            unit = " (sessions)" if kind == "events" else ""
            self.stdout.write(
                f"  {kind}{unit}: inserted {t['inserted']}, updated {t['updated']},"
                f" unchanged {t['unchanged']}, rejected {t['rejected']}"
            )
        if options["rescore"] and not result.dry_run:
            call_command("score_customers", run_key=f"history-import:{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
        elif not result.dry_run and result.changed:
            self.stdout.write("Run `manage.py score_customers` (or import with --rescore) to score the imported book.")
        if not result.ok:
            raise CommandError("Some rows or files were not imported (see above).")
