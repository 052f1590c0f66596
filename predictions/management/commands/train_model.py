"""Train a churn model on everything in the database and register it (promoted if it wins)."""

from typing import Any

from django.core.management.base import BaseCommand

from predictions.models import ModelVersion
from predictions.selectors import champion
from predictions.services.registry import model_train


class Command(BaseCommand):
    help = "Train, register and (if it beats the champion) promote a churn model."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--min-positives", type=int, default=50, help="Churn labels needed to train (else rules)")
        parser.add_argument("--if-no-model", action="store_true", help="Do nothing when a trained champion exists")

    def handle(self, *args: Any, **options: Any) -> None:
        current = champion()
        if options["if_no_model"] and current is not None and current.kind != ModelVersion.Kind.RULES:
            self.stdout.write(f"Champion {current.version} exists; not retraining.")
            return
        version = model_train(seed=options["seed"], min_positives=options["min_positives"])
        metrics = version.metrics or {}
        base = version.baseline_metrics or {}
        self.stdout.write(f"{version.version}: {version.status} — {version.status_reason}")
        if metrics:
            self.stdout.write(
                f"  ROC AUC {metrics.get('roc_auc', 0):.3f} (logistic baseline {base.get('roc_auc', 0):.3f}), "
                f"lift@10% {metrics.get('lift_at_10pct', 0):.2f} (baseline {base.get('lift_at_10pct', 0):.2f}), "
                f"ECE {metrics.get('ece', 0):.3f}, Brier {metrics.get('brier', 0):.3f}"
            )
