"""`manage.py restore_db [FILE | --latest]`: replace the database's contents with a backup."""

import subprocess
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from monitoring import backups, selectors


class Command(BaseCommand):
    help = "Restore the database from a backup file written by backup_db (--latest: the newest in BACKUP_DIR)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", nargs="?", type=Path)
        parser.add_argument("--latest", action="store_true", help="Restore the newest backup in BACKUP_DIR")
        parser.add_argument("--noinput", action="store_true", help="Do not ask for confirmation")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        if options["latest"]:
            files = selectors.backups()
            if not files:
                raise CommandError(f"no backups in {selectors.backup_dir()}")
            path = files[0]
        if path is None:
            raise CommandError("give a backup FILE or --latest")
        if not options["noinput"]:
            answer = input(f"Replace every table of the database with {path}? Type 'yes': ")
            if answer.strip() != "yes":
                raise CommandError("restore cancelled")
        try:
            backups.backup_restore(path=path)
        except subprocess.CalledProcessError as exc:
            raise CommandError(f"restore failed: {exc.stderr.decode(errors='replace').strip()}") from exc
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"restored {path}")
