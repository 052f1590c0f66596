"""`manage.py playbooks_export [--name N] [-o file.json]`: playbooks as JSON, to keep them in git."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from playbooks.models import Playbook
from playbooks.selectors import playbook_export


class Command(BaseCommand):
    help = "Export playbooks (definitions, rules, holdout, caps) as a JSON list."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", action="append", help="Only this playbook (repeatable).")
        parser.add_argument("-o", "--output", help="Write to this file instead of stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        playbooks = Playbook.objects.prefetch_related("rules").order_by("name")
        if options["name"]:
            playbooks = playbooks.filter(name__in=options["name"])
        text = json.dumps([playbook_export(p) for p in playbooks], indent=2, sort_keys=True) + "\n"
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")
