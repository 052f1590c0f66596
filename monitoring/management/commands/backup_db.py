"""`manage.py backup_db`: back up the default database now (pg_dump custom format / SQLite backup API)."""

import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from monitoring import backups


class Command(BaseCommand):
    help = "Back up the database into BACKUP_DIR (or --dir) and keep the newest BACKUP_KEEP (or --keep) files."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dir", type=Path, default=None, help=f"Default: BACKUP_DIR ({settings.BACKUP_DIR})")
        parser.add_argument("--keep", type=int, default=None, help=f"Default: BACKUP_KEEP ({settings.BACKUP_KEEP})")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            path = backups.backup_create(directory=options["dir"], keep=options["keep"])
        except subprocess.CalledProcessError as exc:
            raise CommandError(f"backup failed: {exc.stderr.decode(errors='replace').strip()}") from exc
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(path))
