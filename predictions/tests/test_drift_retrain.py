"""Major drift in the daily batch schedules a retrain (at most once a day) that the card reports."""

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from customers.models import UserSession
from demo.generator import generate
from predictions.models import ModelVersion, PredictionRun
from predictions.services.registry import model_promote, model_train
from predictions.services.scoring import score_customers


@pytest.fixture
def champion(db):
    """A demo book and a trained champion (promoted by hand if the rules won on this small book)."""
    generate(customers=600, seed=11, as_of=timezone.now().date(), activity_scale=0.5, progress=False)
    version = model_train(seed=0, min_positives=20)
    if version.status != ModelVersion.Status.CHAMPION:
        model_promote(version, "Promoted by hand for the test.")
    return version


def _usage_collapses(days: int = 45) -> int:
    """The population shifts: nobody has used the product for the last `days` days."""
    deleted, _ = UserSession.objects.filter(started_at__gte=timezone.now() - dt.timedelta(days=days)).delete()
    return deleted


def test_a_stable_batch_schedules_no_retrain(champion, django_capture_on_commit_callbacks, api_for, manager):
    with django_capture_on_commit_callbacks(execute=True):
        run = score_customers(run_key="batch:stable")

    run.refresh_from_db()
    card = api_for(manager).get("/model/metrics/latest").json()["drift_metrics"]
    assert card["drift_status"] in {"stable", "moderate"}, card["feature_drift_score"]
    assert card["feature_drift_score"] < 0.25
    assert run.retrain_scheduled_at is None and card["retrain"] is None
    assert ModelVersion.objects.exclude(kind=ModelVersion.Kind.RULES).count() == 1


def test_major_drift_retrains_once_a_day_and_the_card_says_so(
    champion, django_capture_on_commit_callbacks, api_for, manager
):
    assert _usage_collapses() > 1000

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = score_customers(run_key="batch:shifted")

    run.refresh_from_db()
    assert run.retrain_scheduled_at is not None and run.retrain_finished_at is not None
    retrained = run.retrain_version
    assert retrained is not None and retrained.pk != champion.pk
    assert ModelVersion.objects.exclude(kind=ModelVersion.Kind.RULES).count() == 2
    # The existing promotion rule decides: the retrained model is champion only if it won.
    current = ModelVersion.objects.get(status=ModelVersion.Status.CHAMPION)
    if retrained.status == ModelVersion.Status.CHAMPION:
        assert retrained.status_reason.startswith("ROC AUC ") and " beats " in retrained.status_reason
    else:
        assert retrained.status_reason.startswith("Kept as candidate") and current.pk == champion.pk
    assert len(callbacks) >= 1

    card = api_for(manager).get("/model/metrics/latest").json()["drift_metrics"]
    shifted = PredictionRun.objects.get(run_key="batch:shifted")
    assert card["retrain"] == {
        "status": "ran",
        "scheduled_at": card["retrain"]["scheduled_at"],
        "finished_at": card["retrain"]["finished_at"],
        "after_batch": "batch:shifted",
        "feature_drift_score": round(sum(shifted.drift.values()) / len(shifted.drift), 4),
        "version": retrained.version,
        "version_status": retrained.status,
        "reason": retrained.status_reason,
    }
    assert card["retrain"]["feature_drift_score"] >= 0.25
    if current.pk == champion.pk:  # the card is still the drifted champion's
        assert card["drift_status"] == "major"

    # A second batch the same day drifts as much but schedules nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        again = score_customers(run_key="batch:shifted-again")
    again.refresh_from_db()
    assert again.retrain_scheduled_at is None
    assert ModelVersion.objects.exclude(kind=ModelVersion.Kind.RULES).count() == 2


@override_settings(DRIFT_RETRAIN=False)
def test_major_drift_without_drift_retrain_only_reports(champion, django_capture_on_commit_callbacks):
    _usage_collapses()

    with django_capture_on_commit_callbacks(execute=True):
        run = score_customers(run_key="batch:shifted")

    run.refresh_from_db()
    assert run.retrain_scheduled_at is None
    assert ModelVersion.objects.exclude(kind=ModelVersion.Kind.RULES).count() == 1
