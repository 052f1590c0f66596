"""Install `churnshield.schedules.SCHEDULES` into django-celery-beat (idempotent)."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from churnshield.schedules import SCHEDULES
from integrations.services import integration_schedules_sync

MANAGED_PREFIX = "churnshield:"


class Command(BaseCommand):
    help = "Create or update the periodic tasks defined in churnshield/schedules.py; disable removed ones."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reset-last-run",
            action="store_true",
            help=(
                "Forget every task's last run (django-celery-beat's documented step after changing "
                "TIME_ZONE or CELERY_TIMEZONE): each task next runs at its next due time, with no "
                "catch-up burst computed from times recorded under the old zone."
            ),
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("reset_last_run"):
            reset = PeriodicTask.objects.update(last_run_at=None)
            PeriodicTasks.update_changed()  # running beats reload the schedule
            self.stdout.write(f"last run forgotten for {reset} periodic tasks.")
        for name, entry in SCHEDULES.items():
            if "interval_seconds" in entry:  # sub-minute jobs (the playbook claimer)
                interval, _ = IntervalSchedule.objects.get_or_create(
                    every=entry["interval_seconds"], period=IntervalSchedule.SECONDS
                )
                PeriodicTask.objects.update_or_create(
                    name=MANAGED_PREFIX + name,
                    defaults={"task": entry["task"], "interval": interval, "crontab": None, "enabled": True},
                )
                continue
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=entry["crontab"].get("minute", "*"),
                hour=entry["crontab"].get("hour", "*"),
                day_of_week=entry["crontab"].get("day_of_week", "*"),
                day_of_month=entry["crontab"].get("day_of_month", "*"),
                month_of_year=entry["crontab"].get("month_of_year", "*"),
                timezone="UTC",
            )
            PeriodicTask.objects.update_or_create(
                name=MANAGED_PREFIX + name,
                defaults={"task": entry["task"], "crontab": crontab, "interval": None, "enabled": True},
            )
        stale = PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX).exclude(
            name__in=[MANAGED_PREFIX + name for name in SCHEDULES]
        )
        stale.update(enabled=False)
        self.stdout.write(f"{len(SCHEDULES)} periodic tasks installed.")
        # Integrations: one pull schedule per integration (its interval lives in its config).
        self.stdout.write(f"{integration_schedules_sync()} integration sync schedules installed.")
