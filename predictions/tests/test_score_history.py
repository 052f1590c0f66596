"""Scoring the past with the champion (`score_history`), rules bands that are ranks on the book,
and a first scoring run that does not page every CSM."""

import datetime as dt
import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from alerts.models import Alert
from customers.models import Customer
from customers.selectors import risk_level, risk_thresholds
from demo.generator import generate
from predictions.ml.training import rank_bands
from predictions.models import ChurnPrediction, PortfolioSnapshot
from predictions.selectors import champion, version_risk_bands
from predictions.services.backfill import score_history
from predictions.services.registry import model_train, rules_version
from predictions.services.scoring import score_customers

pytestmark = pytest.mark.django_db


@pytest.fixture
def book():
    generate(customers=400, seed=3, as_of=timezone.now().date(), activity_scale=0.5, progress=False)
    model_train(seed=0, min_positives=15)
    return champion()


def _midnight(days_ago: int) -> dt.datetime:
    today = timezone.now().astimezone(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time.min, tzinfo=dt.UTC)


def test_the_past_is_rescored_with_the_champion_and_acted_on_nowhere(book):
    customers_before = list(Customer.objects.order_by("pk").values_list("pk", "churn_risk", "health_score"))
    alerts_before = Alert.objects.count()

    counts = score_history(days=90, every_days=30)

    # Checkpoints 30, 60, 90 days back: every prediction of the window is the champion's, dated then.
    window = ChurnPrediction.objects.filter(prediction_date__gte=_midnight(90), prediction_date__lt=_midnight(0))
    assert set(window.values_list("model_version", flat=True)) == {book.version}
    assert set(window.values_list("prediction_date", flat=True)) == {_midnight(90), _midnight(60), _midnight(30)}
    assert counts["checkpoints"] == 3 and counts["predictions"] == window.count() > 0
    # Exactly the customers active then: signed up before and not yet churned.
    at = _midnight(60)
    active_then = Customer.objects.filter(Q(churned_at__isnull=True) | Q(churned_at__gt=at), signup_date__lte=at)
    scored_then = set(window.filter(prediction_date=at).values_list("customer_id", flat=True))
    assert scored_then == set(active_then.values_list("pk", flat=True))
    # Levels in the champion's bands.
    bands = risk_thresholds()
    for probability, level in window.values_list("churn_probability", "risk_level")[:200]:
        assert level == risk_level(float(probability), bands)
    # The past is shown, not acted on: no alert, no customer row changed.
    assert Alert.objects.count() == alerts_before
    assert list(Customer.objects.order_by("pk").values_list("pk", "churn_risk", "health_score")) == customers_before


def test_a_seeded_prediction_at_todays_midnight_is_replaced_a_runs_is_kept(book):
    """The demo seeder dates its last prediction at today's midnight, in bands that are not the
    champion's: left, a customer's timeline would read "41.7 % (low)" after "30.0 % (high)"."""
    seeded = ChurnPrediction.objects.filter(prediction_date=_midnight(0), run__isnull=True)
    assert seeded.exists()  # what generate() leaves
    as_of_today = score_customers(run_key="as-of-today", now=_midnight(0))
    kept = set(ChurnPrediction.objects.filter(run=as_of_today).values_list("pk", flat=True))
    assert kept

    score_history(days=30, every_days=30)

    assert not seeded.exists()
    assert set(ChurnPrediction.objects.filter(run=as_of_today).values_list("pk", flat=True)) == kept


def test_the_portfolio_snapshots_of_the_window_follow_the_rescored_past(book):
    score_history(days=60, every_days=30)
    yesterday = _midnight(1).date()
    days = PortfolioSnapshot.objects.filter(date__gte=_midnight(60).date(), date__lte=yesterday)
    assert days.values("date").distinct().count() == 60
    day = _midnight(45).date()  # scored by the checkpoint 60 days back
    end = _midnight(44)
    alive = Customer.objects.filter(Q(churned_at__isnull=True) | Q(churned_at__gte=end), signup_date__lt=end)
    row = days.filter(date=day).aggregate(active=Sum("active_customers"), at_risk=Sum("at_risk_customers"))
    assert row["active"] == alive.count()
    high = risk_thresholds()[1]
    risky = ChurnPrediction.objects.filter(
        prediction_date=_midnight(60), customer__in=alive, churn_probability__gte=high
    ).count()
    assert row["at_risk"] == risky
    # Per owner as the daily snapshot does it.
    by_owner = dict(days.filter(date=day).values_list("owner_id", "active_customers"))
    expected = dict(alive.values("owner_id").annotate(n=Count("id")).values_list("owner_id", "n"))
    assert {k: v for k, v in by_owner.items() if v} == expected


def test_scoring_the_past_twice_gives_the_same_rows(book):
    score_history(days=60, every_days=30)
    first = sorted(
        ChurnPrediction.objects.filter(prediction_date__lt=_midnight(0)).values_list(
            "customer_id", "prediction_date", "churn_probability"
        )
    )
    snapshots = sorted(PortfolioSnapshot.objects.values_list("date", "owner_id", "risk_sum"))
    score_history(days=60, every_days=30)
    assert (
        sorted(
            ChurnPrediction.objects.filter(prediction_date__lt=_midnight(0)).values_list(
                "customer_id", "prediction_date", "churn_probability"
            )
        )
        == first
    )
    assert sorted(PortfolioSnapshot.objects.values_list("date", "owner_id", "risk_sum")) == snapshots


def test_the_command_reports_and_refuses_bad_arguments(book):
    out = io.StringIO()
    call_command("score_history", "--days", "14", "--every", "7", stdout=out)
    assert "predictions at 2 past dates" in out.getvalue()
    with pytest.raises(CommandError, match="--days and --every"):
        call_command("score_history", "--every", "0")


def test_rules_bands_are_ranks_of_their_score():
    rng = np.random.default_rng(0)
    score = rng.uniform(0, 0.4, 1000)
    bands = rank_bands(score, rng.uniform(size=1000) < 0.05, {"top_share": 0.1})
    assert np.mean(score >= bands["high"]) == pytest.approx(0.10, abs=0.002)
    assert np.mean(score >= bands["medium"]) == pytest.approx(0.20, abs=0.002)


def test_a_training_gives_the_rules_measured_figures_and_bands(book):
    rules = rules_version()
    bands = rules.params["risk_thresholds"]
    assert 0 < bands["medium"] <= bands["high"] < 1
    assert rules.metrics["roc_auc"] > 0.5 and "lift_at_10pct" in rules.metrics
    # Whichever won, the bands are read back as the rules' own (used whenever they are champion).
    assert version_risk_bands(rules) == (bands["medium"], bands["high"])


def test_the_first_scoring_run_of_a_book_pages_nobody_but_tells_managers(book):
    Customer.objects.update(churn_risk=0)  # an imported book: nothing recorded yet
    last = Alert.objects.aggregate(last=Max("id"))["last"] or 0
    run = score_customers(run_key="first")
    new = Alert.objects.filter(id__gt=last)
    assert run.risk_rises == 0
    assert not new.exclude(source=Alert.Source.MODEL_CHANGED).exists()
    summary = new.get(source=Alert.Source.MODEL_CHANGED)
    assert summary.title == f"First scoring run with {book.version}" and summary.customer_id is None
    at_risk = Customer.objects.filter(is_active=True, churn_risk__gte=risk_thresholds()[0]).count()
    assert summary.context["risk_rises"] == at_risk > 0
    # From the second run on, a rise alerts its CSM as usual.
    customer = Customer.objects.filter(is_active=True, churn_risk__gte=risk_thresholds()[1]).first()
    Customer.objects.filter(pk=customer.pk).update(churn_risk=0)
    score_customers(customer_ids=[customer.pk], run_key="second")
    assert Alert.objects.filter(source=Alert.Source.RISK_RISE, customer=customer).exists()
