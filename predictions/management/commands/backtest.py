"""Backtest the training pipeline out of time: train at past cutoffs, score the horizon after each."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand, CommandError, CommandParser

from predictions.data import load_tables
from predictions.management.commands.train_model import parse_as_of
from predictions.ml.backtest import MODELS, CutoffResult, backtest, cutoffs_between, parse_step
from predictions.ml.training import latest_fact_date

MAX_CUTOFFS = 36  # each cutoff trains the pipeline: a typo in --every must not start a day's run
HEADER = "| cutoff | model | n | positives | ROC AUC [95 % CI] | PR AUC | log loss | Brier | lift@10 % | ECE |"


def _date(option: str, value: str) -> dt.datetime:
    try:
        return parse_as_of(value)
    except CommandError as exc:
        raise CommandError(str(exc).replace("--as-of", option)) from exc


class Command(BaseCommand):
    help = (
        "For each cutoff, train on what was known then (the train_model pipeline) and evaluate the champion, "
        "a logistic regression and the rules on the customers active then, labelled by churn within the horizon."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cutoffs", help="Comma-separated dates, e.g. 2026-03-01,2026-06-01")
        parser.add_argument("--from", dest="start", help="First cutoff (with --to and --every)")
        parser.add_argument("--to", dest="end", help="Last cutoff at most")
        parser.add_argument("--every", default="30d", help="Step between cutoffs: 30d (days) or 3m (months)")
        parser.add_argument("--horizon", type=int, default=90, help="Days after a cutoff a churn counts (default 90)")
        parser.add_argument("--min-positives", type=int, default=50, help="Churn labels to train (as train_model)")
        parser.add_argument(
            "--min-test-positives", type=int, default=10, help="Churners within the horizon needed to evaluate"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", dest="json_path", help="Also write the figures to this file")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoffs = self._cutoffs(options)
        if options["horizon"] < 1:
            raise CommandError("--horizon: must be at least 1 day")
        if options["min_positives"] < 1 or options["min_test_positives"] < 1:
            raise CommandError("--min-positives and --min-test-positives: must be at least 1")
        json_path = Path(options["json_path"]) if options["json_path"] else None
        if json_path is not None and not json_path.parent.is_dir():
            raise CommandError(f"--json: the folder {json_path.parent} does not exist")

        tables = load_tables()
        if tables.customers.empty:
            raise CommandError("the database holds no customers to backtest on")
        data_end = latest_fact_date(tables)
        results = backtest(
            tables,
            cutoffs,
            horizon_days=options["horizon"],
            data_end=data_end,
            min_positives=options["min_positives"],
            min_test_positives=options["min_test_positives"],
            seed=options["seed"],
        )
        self.stdout.write(
            f"Out-of-time backtest: horizon {options['horizon']} days, data end {data_end:%Y-%m-%d}, "
            f"{len(results)} cutoff(s)"
        )
        self.stdout.write(HEADER)
        self.stdout.write("|---|---|---|---|---|---|---|---|---|---|")
        for result in results:
            for line in _rows(result):
                self.stdout.write(line)
        if json_path is not None:
            payload = {
                "horizon_days": options["horizon"],
                "data_end": data_end.isoformat(),
                "cutoffs": [result.as_json() for result in results],
            }
            json_path.write_text(json.dumps(payload, indent=2))
            self.stdout.write(f"Figures written to {json_path}")

    def _cutoffs(self, options: dict) -> list[pd.Timestamp]:
        listed, start, end = options["cutoffs"], options["start"], options["end"]
        if listed and (start or end):
            raise CommandError("give either --cutoffs or --from/--to, not both")
        if listed:
            values = [v.strip() for v in listed.split(",") if v.strip()]
            if not values:
                raise CommandError("--cutoffs: no date given")
            cutoffs = [pd.Timestamp(_date("--cutoffs", v)) for v in values]
        elif start and end:
            first, last = pd.Timestamp(_date("--from", start)), pd.Timestamp(_date("--to", end))
            if first > last:
                raise CommandError(f"--from {start} is after --to {end}")
            try:
                step = parse_step(options["every"])
            except ValueError as exc:
                raise CommandError(f"--every: {exc}") from exc
            cutoffs = cutoffs_between(first, last, step)
        else:
            raise CommandError("give --cutoffs DATE[,DATE…] or --from DATE --to DATE [--every 30d]")
        cutoffs = sorted(set(cutoffs))
        if len(cutoffs) > MAX_CUTOFFS:
            raise CommandError(f"{len(cutoffs)} cutoffs: at most {MAX_CUTOFFS} (each one trains the pipeline)")
        return cutoffs


def _rows(result: CutoffResult) -> list[str]:
    day = f"{result.cutoff:%Y-%m-%d}"
    if result.skipped:
        return [f"| {day} | skipped: {result.skipped} | | | | | | | | |"]
    lines = []
    for name in MODELS:
        m = result.metrics[name]
        label = f"champion ({result.algorithm})" if name == "champion" else name
        ci = m["roc_auc_ci"]
        auc = f"{m['roc_auc']:.3f} [{ci[0]:.3f}–{ci[1]:.3f}]"
        lines.append(
            f"| {day} | {label} | {m['n_samples']} | {m['positives']} | {auc} | {m['pr_auc']:.3f} | "
            f"{m['log_loss']:.3f} | {m['brier']:.3f} | {m['lift_at_10pct']:.2f} | {m['ece']:.3f} |"
        )
    return lines
