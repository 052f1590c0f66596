"""`POST /api/ml/update-outcome` records outcomes; `POST /api/ml/recommend-intervention` learns from them."""

from decimal import Decimal

import pytest
from django.utils import timezone

from interventions.models import Intervention
from tests.helpers import make_intervention, make_prediction


@pytest.mark.django_db
def test_update_outcome_completes_the_open_intervention_of_that_type(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    open_one = make_intervention(customer, type="Payment Recovery", status="active")
    response = api_for(csm).post(
        "/api/ml/update-outcome",
        {"customerId": customer.pk, "intervention": "payment recovery", "success": True, "revenueImpact": 1200.5},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Outcome updated successfully"}
    open_one.refresh_from_db()
    assert (open_one.status, open_one.outcome, open_one.revenue_impact) == (
        "completed",
        "succeeded",
        Decimal("1200.50"),
    )
    assert open_one.completed_at is not None


@pytest.mark.django_db
def test_update_outcome_without_an_intervention_records_one(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    api_for(csm).post(
        "/api/ml/update-outcome",
        {"customerId": customer.pk, "intervention": "Onboarding Call", "success": False},
        format="json",
    )
    recorded = Intervention.objects.get(customer=customer)
    assert (recorded.type, recorded.status, recorded.outcome) == ("Onboarding Call", "completed", "failed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"intervention": "x", "success": True}, "customerId"),
        ({"customerId": 1, "success": True}, "intervention"),
        ({"customerId": 1, "intervention": "x", "success": "maybe"}, "success"),
    ],
)
def test_update_outcome_bad_input(csm, api_for, body, field):
    response = api_for(csm).post("/api/ml/update-outcome", body, format="json")
    assert response.status_code == 400 and field in response.json()["errors"]
    assert Intervention.objects.count() == 0


@pytest.mark.django_db
def test_recommendation_follows_causes_and_recorded_success(manager, make_customer, api_for):
    # History: among high-risk customers, Support Escalation worked 4/4 and Executive Check-in 0/4.
    for kind, outcome in (("Support Escalation", "succeeded"), ("Executive Check-in", "failed")):
        for _ in range(4):
            past = make_customer(churn_risk=Decimal("0.9"))
            make_intervention(past, type=kind, status="completed", outcome=outcome, completed_at=timezone.now())
    customer = make_customer(churn_risk=Decimal("0.9"), mrr=Decimal("1000"))
    make_prediction(customer, "0.9000", causes=[{"cause": "Low satisfaction"}, {"cause": "Support issues"}])

    body = api_for(manager).post("/api/ml/recommend-intervention", {"customerId": customer.pk}, format="json").json()
    assert set(body) == {"type", "priority", "estimatedSuccess", "estimatedRevenueSaved", "description", "reasoning"}
    assert body["type"] == "Support Escalation"  # answers a cause, and has worked for customers like this one
    assert body["priority"] == "high"
    # (4 wins + 5 pseudo-outcomes at the 50 % overall rate) / (4 + 5)
    assert body["estimatedSuccess"] == round((4 + 5 * 0.5) / 9, 2)
    assert body["estimatedRevenueSaved"] == round(1000 * 12 * (4 + 2.5) / 9, 2)
    assert "4 of 4" in body["reasoning"]


@pytest.mark.django_db
def test_recommendation_outside_portfolio_is_404(csm, other_csm, make_customer, api_for):
    theirs = make_customer(owner=other_csm)
    response = api_for(csm).post("/api/ml/recommend-intervention", {"customerId": theirs.pk}, format="json")
    assert response.status_code == 404
