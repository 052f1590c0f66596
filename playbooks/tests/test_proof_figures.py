"""The playbook proof (per playbook, per intervention type) summed in the database, against a
small book computed by hand: holdouts, risk 30 days later, churned customers, two scopes."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from playbooks.models import PlaybookExecution, PlaybookStepRun
from playbooks.selectors import playbook_analytics, playbook_analytics_by_type
from playbooks.services import execution_outcomes_record
from tests.helpers import make_prediction
from workspace.reports import playbook_effects

pytestmark = pytest.mark.django_db
WAIT = [{"key": "w", "type": "wait", "duration": "1d"}]
COMPLETED, FAILED, RUNNING = "completed", "failed", "running"


@pytest.fixture
def book(make_playbook, make_customer, csm, other_csm):
    now = timezone.now()
    old, young = now - dt.timedelta(days=40), now - dt.timedelta(days=5)
    a = make_playbook(WAIT, name="Call A", intervention_type="Call", holdout_share=0.5)
    b = make_playbook(WAIT, name="Call B", intervention_type="Call")
    make_playbook(WAIT, name="Mail", intervention_type="Email")  # never ran

    def customer(mrr, churned_days_ago=None, owner=csm):
        churned = now - dt.timedelta(days=churned_days_ago) if churned_days_ago is not None else None
        return make_customer(owner=owner, mrr=Decimal(mrr), churned_at=churned, is_active=churned is None)

    def run(playbook, who, status, *, holdout=False, started=old, risk=None, hours=None, steps=()):
        execution = PlaybookExecution.objects.create(
            playbook=playbook, customer=who, status=status, is_holdout=holdout, started_at=started,
            risk_at_start=Decimal(risk) if risk else None,
            completed_at=started + dt.timedelta(hours=hours) if hours else None,
        )  # fmt: skip
        for n, step_status in enumerate(steps):
            PlaybookStepRun.objects.create(
                execution=execution, step_key=f"s{n}", step_type="create_alert", status=step_status, started_at=started
            )
        return execution

    def predicted(who, probability, days_after_start):
        prediction = make_prediction(who, probability=probability)
        prediction.prediction_date = old + dt.timedelta(days=days_after_start)
        prediction.save()

    a1, a2, a3, a4 = customer("100.00"), customer("250.50", 20), customer("80.25", 2), customer("40.00", 50)
    h1, h2, h3 = customer("300.00", 10), customer("60.00", 3), customer("70.00", 1, owner=other_csm)
    b1, b2, y1 = customer("1000.00"), customer("500.00", owner=other_csm), customer("10.00")
    run(a, a1, COMPLETED, risk="0.5000", hours=3, steps=["succeeded", "succeeded"])
    run(a, a2, FAILED, risk="0.7000", steps=["succeeded", "failed"])
    run(a, a3, RUNNING, started=young, risk="0.6000")  # matured early: its customer churned
    run(a, a4, COMPLETED, hours=1.5)  # the customer churned before it started: not a churn
    run(a, h1, COMPLETED, holdout=True, risk="0.8000", hours=0.001)
    run(a, h2, COMPLETED, holdout=True, risk="0.3000", hours=0.001)
    run(a, h3, COMPLETED, holdout=True, hours=0.001)
    run(b, b1, COMPLETED, risk="0.2000", hours=2, steps=["failed"])
    run(b, b2, COMPLETED, risk="0.4000", hours=4)
    run(b, y1, RUNNING, started=young, risk="0.9000")
    # a1: one too early, two on the 30th day (the first written counts), one later.
    for probability, day in (("0.1000", 29), ("0.4000", 30), ("0.9000", 30), ("0.2000", 35)):
        predicted(a1, probability, day)
    predicted(a2, "0.7500", 31)
    predicted(h1, "0.8500", 30)
    predicted(h2, "0.3000", 33)
    predicted(b1, "0.2500", 30)
    predicted(b2, "0.3000", 32)
    return {"a": a, "b": b, "a1": a1, "b1": b1}


def by_name(rows: list[dict], key: str) -> dict[str, dict]:
    return {row[key]: row for row in rows}


def test_the_proof_figures_equal_the_hand_computed_ones(book, csm, manager, api_for):
    assert execution_outcomes_record() == 6  # a1, a2, h1, h2, b1, b2: the rest have no later risk
    answer = api_for(csm).get("/api/interventions/analytics").json()
    playbooks = by_name(answer["playbook_performance"], "name")
    assert {k: v for k, v in playbooks["Call A"].items() if k not in ("playbook_id", "holdout_share")} == {
        "name": "Call A",
        "intervention_type": "Call",
        "executions": 4,
        "holdout_executions": 2,  # h3 is another CSM's
        "running": 1,
        "completed": 2,
        "failed": 1,
        "completion_rate": 66.7,  # 2 of the 3 finished
        "step_runs": 4,
        "step_failure_rate": 25.0,
        "avg_time_to_complete_hours": 2.25,  # (3 + 1.5) / 2
        "risk_change_30d": -2.5,  # mean(0.40 - 0.50, 0.75 - 0.70), points
        "holdout_risk_change_30d": 2.5,  # mean(0.85 - 0.80, 0.30 - 0.30)
        "churn_rate": 50.0,  # a2, a3 of a1..a4 (a4 churned before its start)
        "holdout_churn_rate": 100.0,
        "churn_reduction_points": 50.0,
        "retained_mrr": 100.0,  # a1
        "revenue_retained": 2824.5,  # 50% x (100 + 250.50 + 80.25 + 40) x 12
    }
    assert {k: playbooks["Call B"][k] for k in ("executions", "completion_rate", "risk_change_30d")} == {
        "executions": 2,
        "completion_rate": 100.0,
        "risk_change_30d": 5.0,
    }
    types = by_name(answer["playbook_performance_by_type"], "intervention_type")
    call = {
        "executions": 6,
        "holdout_executions": 2,
        "running": 2,
        "completed": 3,
        "failed": 1,
        "completion_rate": 75.0,
        "step_runs": 5,
        "step_failure_rate": 40.0,
        "avg_time_to_complete_hours": 2.17,  # (3 + 1.5 + 2) / 3, from the exact sum
        "risk_change_30d": 0.0,  # (-0.10 + 0.05 + 0.05) / 3
        "holdout_risk_change_30d": 2.5,
        "churn_rate": 40.0,  # 2 of a1..a4, b1 (y1 has not matured)
        "holdout_churn_rate": 100.0,
        "churn_reduction_points": 60.0,
        "retained_mrr": 1110.0,  # a1 + b1 + y1
        "revenue_retained": 10661.4,  # 60% x 1480.75 x 12
    }
    assert {k: types["Call"][k] for k in call} == call
    never_ran = {k: v for k, v in types["Email"].items() if k != "intervention_type"}
    assert never_ran == {
        **dict.fromkeys(("executions", "holdout_executions", "running", "completed", "failed", "step_runs"), 0),
        **dict.fromkeys(("completion_rate", "step_failure_rate", "revenue_retained"), 0.0),
        **dict.fromkeys(("avg_time_to_complete_hours", "risk_change_30d", "holdout_risk_change_30d"), None),
        **dict.fromkeys(("churn_rate", "holdout_churn_rate", "churn_reduction_points"), None),
        "retained_mrr": 0,
    }

    # A manager sees the other CSM's b2 (completed in 4 h, 0.40 -> 0.30) and h3 (churned holdout).
    team = playbook_analytics(user=manager)
    b = by_name(team["playbooks"], "name")["Call B"]
    assert (b["executions"], b["avg_time_to_complete_hours"], b["risk_change_30d"], b["retained_mrr"]) == (
        3,
        3.0,
        -2.5,
        1510.0,
    )
    a = by_name(team["playbooks"], "name")["Call A"]
    assert (a["holdout_executions"], a["holdout_churn_rate"], a["holdout_risk_change_30d"]) == (3, 100.0, 2.5)
    # The recommendation's and the Reports' counts are the same counts.
    team_call = by_name(team["by_intervention_type"], "intervention_type")["Call"]
    keys = ("intervention_type", "executions", "churn_rate", "holdout_churn_rate", "churn_reduction_points")
    assert playbook_analytics_by_type(kinds={"call"})["call"] == {k: team_call[k] for k in keys}
    effects = {e.name: e for e in playbook_effects(user=csm, now=timezone.now())["rows"]}
    assert (effects["Call A"].enrolled, effects["Call A"].enrolled_churned) == (4, 2)
    assert (effects["Call A"].holdout, effects["Call A"].holdout_churned, effects["Call A"].started) == (2, 2, 6)


def test_an_outcome_is_recorded_once_when_a_scoring_matures_it(book, django_capture_on_commit_callbacks):
    from predictions.services.scoring import score_customers

    a1 = PlaybookExecution.objects.get(customer=book["a1"])
    b1 = PlaybookExecution.objects.get(customer=book["b1"])
    assert execution_outcomes_record(customer_ids=[book["a1"].pk]) == 1  # only the listed customers
    assert PlaybookExecution.objects.exclude(risk_after=None).get() == a1
    a1.refresh_from_db()
    assert a1.risk_after == Decimal("0.4000")  # the first prediction on day 30, earliest id on the tie
    # A scoring today: b1's own day-30 risk is recorded after it commits; a1's stays as recorded.
    with django_capture_on_commit_callbacks(execute=True):
        score_customers(customer_ids=[book["a1"].pk, book["b1"].pk], trigger="event")
    a1.refresh_from_db()
    b1.refresh_from_db()
    assert (a1.risk_after, b1.risk_after) == (Decimal("0.4000"), Decimal("0.2500"))
    assert execution_outcomes_record(customer_ids=[book["a1"].pk, book["b1"].pk]) == 0
    young = PlaybookExecution.objects.get(customer__mrr=Decimal("10.00"))
    assert young.risk_after is None  # started 5 days ago: no outcome yet, whatever scoring ran


def test_the_analytics_page_costs_the_same_queries_whatever_the_book(book, manager, make_customer, csm):
    client = Client()
    client.force_login(manager)
    url = reverse("admin:interventions_intervention_analytics")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    client.get(url)
    few = queries()
    for n in range(20):
        who = make_customer(owner=csm, churned_at=timezone.now() if n % 3 == 0 else None)
        PlaybookExecution.objects.create(
            playbook=book["a"], customer=who, status=COMPLETED, is_holdout=n % 2 == 0,
            started_at=timezone.now() - dt.timedelta(days=40), risk_at_start=Decimal("0.5000"),
        )  # fmt: skip
        make_prediction(who, probability="0.4000")
    execution_outcomes_record()
    assert queries() == few
    # Session, user, groups, permissions (2); the interventions' aggregates (by type with their
    # durations, high-risk coverage, outcomes); two reads of the admin's settings rows. The playbook
    # proof is on the playbook report and Reports, not on this page.
    assert few == 10
