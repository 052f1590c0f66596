"""`manage.py backtest` on a generated book: a row per cutoff and model, skips, bad arguments."""

import datetime as dt
import io
import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from demo.generator import generate

ROW = re.compile(
    r"^\| (?P<cutoff>\d{4}-\d\d-\d\d) \| (?P<model>champion \((?:logistic|xgboost)\)|logistic|rules) \| "
    r"(?P<n>\d+) \| (?P<positives>\d+) \| (?P<auc>[\d.]+) \[(?P<low>[\d.]+)–(?P<high>[\d.]+)\] \| "
    r"(?P<pr>[\d.]+) \| (?P<logloss>[\d.]+) \| (?P<brier>[\d.]+) \| (?P<lift>[\d.]+) \| (?P<ece>[\d.]+) \|$"
)


@pytest.fixture
def book(db):
    today = timezone.now().date()
    generate(customers=600, seed=11, as_of=today, activity_scale=0.5, progress=False)
    return today


def test_a_row_per_cutoff_and_model_and_a_skipped_cutoff_with_its_reason(book, tmp_path):
    first, second = book - dt.timedelta(days=180), book - dt.timedelta(days=120)
    late = book - dt.timedelta(days=30)
    out = io.StringIO()

    call_command(
        "backtest",
        "--cutoffs",
        f"{late},{second},{first}",
        "--min-positives",
        "20",
        "--min-test-positives",
        "5",
        "--json",
        str(tmp_path / "figures.json"),
        stdout=out,
    )

    lines = out.getvalue().splitlines()
    rows = [m.groupdict() for m in map(ROW.match, lines) if m]
    assert [(r["cutoff"], r["model"].split(" ")[0]) for r in rows] == [
        (str(day), model) for day in (first, second) for model in ("champion", "logistic", "rules")
    ]
    for r in rows:
        assert 0 < int(r["positives"]) < int(r["n"])
        assert 0 <= float(r["low"]) <= float(r["auc"]) <= float(r["high"]) <= 1
        assert 0 < float(r["pr"]) <= 1 and 0 < float(r["brier"]) < 1 and 0 <= float(r["ece"]) <= 1
        assert float(r["logloss"]) > 0 and float(r["lift"]) >= 0
    for day in (first, second):  # the three models are scored on the same customers
        assert len({(r["n"], r["positives"]) for r in rows if r["cutoff"] == str(day)}) == 1
    figures = json.loads((tmp_path / "figures.json").read_text())
    end = figures["data_end"][:10]
    assert f"| {late} | skipped: its 90-day horizon ends after the data's end ({end}) | | | | | | | | |" in lines
    assert str(book - dt.timedelta(days=2)) <= end <= str(book)
    assert figures["horizon_days"] == 90
    assert [c["cutoff"][:10] for c in figures["cutoffs"]] == [str(first), str(second), str(late)]
    assert "skipped" in figures["cutoffs"][2] and "models" not in figures["cutoffs"][2]
    champion = figures["cutoffs"][0]["models"]["champion"]
    shown = rows[0]
    assert f"{champion['roc_auc']:.3f}" == shown["auc"] and champion["n_samples"] == int(shown["n"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --cutoffs DATE"),
        (["--cutoffs", "2026-13-01"], "--cutoffs: '2026-13-01' is not an ISO date"),
        (["--cutoffs", " , "], "--cutoffs: no date given"),
        (["--cutoffs", "2026-03-01", "--from", "2026-01-01"], "either --cutoffs or --from/--to"),
        (["--from", "2026-06-01", "--to", "2026-01-01"], "--from 2026-06-01 is after --to 2026-01-01"),
        (["--from", "2026-01-01", "--to", "2026-06-01", "--every", "2w"], "--every: '2w' is not a step"),
        (["--from", "2020-01-01", "--to", "2026-06-01", "--every", "1d"], "at most 36"),
        (["--cutoffs", "2026-03-01", "--horizon", "0"], "--horizon: must be at least 1 day"),
        (["--cutoffs", "2026-03-01", "--json", "/no/such/folder/out.json"], "--json: the folder /no/such/folder"),
    ],
)
def test_bad_arguments_are_a_command_error(db, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("backtest", *args, stdout=io.StringIO())


def test_an_empty_database_is_a_command_error(db):
    with pytest.raises(CommandError, match="no customers to backtest on"):
        call_command("backtest", "--cutoffs", "2026-03-01", stdout=io.StringIO())
