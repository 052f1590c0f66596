"""Automatic trigger rules (after scoring, on events) and the proof figures on a hand-computed fixture."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import BillingEvent
from customers.services import billing_event_record
from playbooks import services
from playbooks.models import PlaybookExecution, PlaybookStepRun, TriggerRule
from playbooks.services import execution_outcomes_record
from tests.helpers import make_prediction

pytestmark = pytest.mark.django_db
WAIT = [{"key": "w", "type": "wait", "duration": "1d"}]


def enrolled(playbook) -> set[int]:
    return set(PlaybookExecution.objects.filter(playbook=playbook).values_list("customer_id", flat=True))


def test_risk_enters_high_and_cause_appears(make_playbook, make_customer, go_ahead):
    playbook = make_playbook(WAIT)
    go_ahead(TriggerRule.objects.create(playbook=playbook, kind="risk_enters_high"))
    support = make_playbook(WAIT)
    go_ahead(TriggerRule.objects.create(playbook=support, kind="cause_appears", params={"cause": "Support issues"}))
    rose, stayed, new_cause = make_customer(), make_customer(), make_customer()
    make_prediction(rose, probability="0.6000", days_ago=2)
    make_prediction(rose, probability="0.9000")
    make_prediction(stayed, probability="0.9000", days_ago=2)
    make_prediction(stayed, probability="0.9100")
    tickets = [{"cause": "Support issues", "factor": "Tickets", "impact": 0.4, "value": "5"}]
    make_prediction(new_cause, probability="0.5000", days_ago=2)
    make_prediction(new_cause, probability="0.5000", causes=tickets)
    make_prediction(stayed, probability="0.9100", causes=tickets, days_ago=0)  # had no tickets before either
    services.evaluate_rules()
    assert enrolled(playbook) == {rose.pk}
    assert enrolled(support) == {new_cause.pk, stayed.pk}
    # Evaluating again enrols no one twice (one running; re-enrolment cap).
    services.evaluate_rules()
    assert PlaybookExecution.objects.count() == 3


def test_health_drop_and_segment_filter(make_playbook, make_customer, go_ahead):
    playbook = make_playbook(WAIT)
    rule = TriggerRule.objects.create(
        playbook=playbook, kind="health_drop", params={"points": 20, "days": 14}, segment={"plan": ["Enterprise"]}
    )
    dropped, small_drop, other_plan = (
        make_customer(health_score=40, plan="Enterprise"),
        make_customer(health_score=70, plan="Enterprise"),
        make_customer(health_score=40, plan="Pro"),
    )
    for customer in (dropped, small_drop, other_plan):
        prediction = make_prediction(customer, days_ago=20)
        prediction.health_score = 80
        prediction.save()
    go_ahead(rule)
    services.evaluate_rules()
    assert enrolled(playbook) == {dropped.pk}


def test_failed_payment_event_enrols_at_once(
    make_playbook, make_customer, go_ahead, django_capture_on_commit_callbacks
):
    playbook = make_playbook(WAIT)
    go_ahead(TriggerRule.objects.create(playbook=playbook, kind="failed_payment", params={"days": 1}))
    customer, other = make_customer(), make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        for who, kind in ((customer, "payment_failed"), (other, "payment_succeeded")):
            billing_event_record(event=BillingEvent(customer=who, kind=kind, amount=10, occurred_at=timezone.now()))
    assert enrolled(playbook) == {customer.pk}


def test_scoring_run_evaluates_the_rules(make_playbook, make_customer, go_ahead, django_capture_on_commit_callbacks):
    from predictions.services.scoring import score_customers

    playbook = make_playbook(WAIT)
    go_ahead(TriggerRule.objects.create(playbook=playbook, kind="segment", segment={"plan": ["Gold"]}))
    gold, pro = make_customer(plan="Gold"), make_customer(plan="Pro")
    with django_capture_on_commit_callbacks(execute=True):
        score_customers(customer_ids=[gold.pk, pro.pk], trigger="event")
    assert enrolled(playbook) == {gold.pk}


def test_analytics_on_a_hand_computed_fixture(make_playbook, make_customer, csm, api_for):
    playbook = make_playbook(WAIT, name="Proof", intervention_type="Call")
    now = timezone.now()
    old = now - dt.timedelta(days=40)

    def execution(customer, status, holdout=False, started=old, risk="0.8000", hours=None):
        return PlaybookExecution.objects.create(
            playbook=playbook, customer=customer, status=status, is_holdout=holdout, started_at=started,
            risk_at_start=Decimal(risk), completed_at=started + dt.timedelta(hours=hours) if hours else None,
        )  # fmt: skip

    def later_prediction(customer, probability, days_after):
        p = make_prediction(customer, probability=probability)
        p.prediction_date = old + dt.timedelta(days=days_after)
        p.save()

    c1 = make_customer(owner=csm, mrr=Decimal(100))
    c2 = make_customer(owner=csm, mrr=Decimal(200), churned_at=now - dt.timedelta(days=10), is_active=False)
    c3 = make_customer(owner=csm, mrr=Decimal(300))
    c4 = make_customer(owner=csm, mrr=Decimal(400), churned_at=now - dt.timedelta(days=5), is_active=False)
    c5 = make_customer(owner=csm, mrr=Decimal(500), churned_at=now - dt.timedelta(days=2), is_active=False)
    e1 = execution(c1, "completed", hours=2)
    e2 = execution(c2, "failed", risk="0.9000", hours=1)
    execution(c3, "running", started=now - dt.timedelta(days=1))
    execution(c4, "completed", holdout=True, hours=0.001)
    execution(c5, "completed", holdout=True, hours=0.001)
    later_prediction(c1, "0.6000", 31)
    later_prediction(c2, "0.9500", 35)
    later_prediction(c4, "0.9000", 31)
    # What the scoring that wrote those predictions triggers: their outcomes are recorded.
    assert execution_outcomes_record() == 3
    for n, (ex, status) in enumerate([(e1, "succeeded")] * 3 + [(e2, "succeeded"), (e2, "failed")]):
        PlaybookStepRun.objects.create(
            execution=ex, step_key=f"k{n}", step_type="create_alert", status=status, started_at=old
        )

    body = api_for(csm).get("/api/interventions/analytics").json()
    row = next(r for r in body["playbook_performance"] if r["name"] == "Proof")
    expected = {
        "executions": 3,
        "holdout_executions": 2,
        "running": 1,
        "completed": 1,
        "failed": 1,
        "completion_rate": 50.0,
        "step_runs": 5,
        "step_failure_rate": 20.0,
        "avg_time_to_complete_hours": 2.0,
        "risk_change_30d": -7.5,  # mean(0.60-0.80, 0.95-0.90) in points
        "holdout_risk_change_30d": 10.0,
        "churn_rate": 50.0,  # e3 has not matured (1 day), e2 churned
        "holdout_churn_rate": 100.0,
        "churn_reduction_points": 50.0,
        "retained_mrr": 400.0,  # c1 + c3
        "revenue_retained": 3600.0,  # 50% x (100+200+300) x 12
    }
    assert {k: row[k] for k in expected} == expected
    by_type = next(r for r in body["playbook_performance_by_type"] if r["intervention_type"] == "Call")
    assert by_type["executions"] == 3 and by_type["churn_reduction_points"] == 50.0
    # What a recommendation reads, counted in the database: the same figures as the full analytics.
    from playbooks.selectors import playbook_analytics_by_type

    lean = playbook_analytics_by_type()["call"]
    keys = ("intervention_type", "executions", "churn_rate", "holdout_churn_rate", "churn_reduction_points")
    assert lean == {key: by_type[key] for key in keys}
    # The contract's original keys are all still there.
    assert {
        "overall_metrics",
        "success_rates_by_type",
        "retention_analysis",
        "top_performing_interventions",
        "insights",
    } <= set(body)


def test_recommendation_weighs_what_a_playbook_proved_against_its_holdout(
    make_playbook, make_customer, manager, api_for
):
    from tests.helpers import make_intervention

    # Recorded outcomes alone favour Executive Check-in (1 of 1 against none tried).
    past = make_customer(churn_risk=Decimal("0.9"))
    make_intervention(
        past, type="Executive Check-in", status="completed", outcome="succeeded", completed_at=timezone.now()
    )
    customer = make_customer(churn_risk=Decimal("0.9"), mrr=Decimal("1000"))
    make_prediction(customer, "0.9000", causes=[{"cause": "Low satisfaction"}, {"cause": "Support issues"}])

    def recommend() -> dict:
        return (
            api_for(manager).post("/api/ml/recommend-intervention", {"customerId": customer.pk}, format="json").json()
        )

    assert recommend()["type"] == "Executive Check-in"

    # A Support Escalation playbook kept its customers (0 of 2 churned) while its holdout churned (2 of 2).
    playbook = make_playbook(WAIT, name="Escalate", intervention_type="Support Escalation")
    old, now = timezone.now() - dt.timedelta(days=40), timezone.now()
    for holdout in (False, False, True, True):
        churned = {"churned_at": now - dt.timedelta(days=3), "is_active": False} if holdout else {}
        PlaybookExecution.objects.create(
            playbook=playbook, customer=make_customer(**churned), status="completed", is_holdout=holdout,
            started_at=old, completed_at=old + dt.timedelta(hours=1), risk_at_start=Decimal("0.8"),
        )  # fmt: skip

    body = recommend()
    assert body["type"] == "Support Escalation"
    assert "churned 0.0% vs 100.0% in the holdout (2 runs)" in body["reasoning"]
