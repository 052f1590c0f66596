"""`manage.py playbooks_import file.json`: create or update playbooks by name (all or nothing)."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.exceptions import InvalidInputError
from playbooks.defaults import DEFAULT_PLAYBOOKS
from playbooks.services import playbooks_import


class Command(BaseCommand):
    help = "Import playbooks exported by playbooks_export (validated; invalid files change nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="JSON file (a list of playbooks, or one playbook).")
        parser.add_argument("--defaults", action="store_true", help="Import the built-in default playbooks.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["defaults"]:
            documents = DEFAULT_PLAYBOOKS
        elif options["path"]:
            try:
                with open(options["path"], encoding="utf-8") as handle:
                    documents = json.load(handle)
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {options['path']}: {exc}") from exc
        else:
            raise CommandError("give a JSON file or --defaults")
        if isinstance(documents, dict):
            documents = [documents]
        try:
            counts = playbooks_import(documents=documents)
        except InvalidInputError as exc:
            raise CommandError(f"invalid playbooks, nothing imported: {json.dumps(exc.errors)}") from exc
        self.stdout.write(self.style.SUCCESS(f"Imported playbooks: {counts}"))
