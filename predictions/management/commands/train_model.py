"""Train a churn model on what the database knew at a date and register it (promoted if it wins)."""

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from predictions.models import ModelVersion
from predictions.selectors import champion, default_as_of
from predictions.services.registry import model_train


def parse_as_of(value: str | None) -> dt.datetime | None:
    """`--as-of` as an aware datetime: a date means the end of that day (UTC)."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--as-of: {value!r} is not an ISO date (YYYY-MM-DD)") from exc
    if len(value) <= 10:  # a bare date: everything that happened on it is known
        parsed = parsed.replace(hour=23, minute=59, second=59)
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Train, register and (if it beats the champion, the logistic baseline and the rules) promote a model."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--min-positives", type=int, default=50, help="Churn labels needed to train (else rules)")
        parser.add_argument("--if-no-model", action="store_true", help="Do nothing when a trained champion exists")
        parser.add_argument(
            "--as-of", default=None, help="Train on facts up to this date (default: now, or the data's end)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        current = champion()
        if options["if_no_model"] and current is not None and current.kind != ModelVersion.Kind.RULES:
            self.stdout.write(f"Champion {current.version} exists; not retraining.")
            return
        as_of = parse_as_of(options["as_of"])
        if as_of is None:
            as_of, note = default_as_of(timezone.now())
            if note:
                self.stdout.write(note)
        version = model_train(as_of=as_of, seed=options["seed"], min_positives=options["min_positives"])
        metrics = version.metrics or {}
        base = version.baseline_metrics or {}
        self.stdout.write(f"{version.version}: {version.status} — {version.status_reason}")
        if metrics:
            self.stdout.write(
                f"  ROC AUC {metrics.get('roc_auc') or 0:.3f} (logistic baseline {base.get('roc_auc') or 0:.3f}), "
                f"lift@10% {metrics.get('lift_at_10pct') or 0:.2f} (baseline {base.get('lift_at_10pct') or 0:.2f}), "
                f"ECE {metrics.get('ece') or 0:.3f}, Brier {metrics.get('brier') or 0:.3f}"
            )
