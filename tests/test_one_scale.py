"""One scale per field: a cause's impact is a percent wherever a response shows it, and churned
customers are at risk of nothing (riskLevel filter, admin filter, dashboard)."""

from decimal import Decimal

import pytest
from django.test import Client

from tests.helpers import make_prediction

CAUSE = {"cause": "Support issues", "factor": "Open tickets", "impact": 0.4567, "value": "4 open"}


@pytest.mark.django_db
def test_every_response_shows_a_causes_impact_in_percent(viewer, make_customer, api_for):
    customer = make_customer(churn_risk=Decimal("0.8100"))
    make_prediction(customer, "0.8100", causes=[CAUSE])
    client = api_for(viewer)
    predicted = client.post("/api/v1/churn/predict", {"customerId": customer.pk}, format="json").json()
    assert predicted["topCauses"] == [{"factor": "Open tickets", "impact": 45.7, "value": "4 open"}]
    explained = client.post("/api/v1/causes/explain", {"customerId": customer.pk}, format="json").json()
    assert [cause["impact"] for cause in explained["causes"]] == [45.7]
    batch = client.post("/api/ml/batch-predict", {"customerIds": [customer.pk]}, format="json").json()
    assert [factor["importance"] for factor in batch["predictions"][0]["topFactors"]] == [45.7]
    detail = client.get(f"/api/customers/{customer.pk}").json()
    assert [cause["impact"] for cause in detail["latestPrediction"]["topCauses"]] == [45.7]


@pytest.mark.django_db
def test_churned_customers_are_in_no_risk_band(manager, admin_user, make_customer, api_for):
    active = make_customer(churn_risk=Decimal("0.9000"))
    churned = make_customer(churn_risk=Decimal("0.9000"), is_active=False)
    client = api_for(manager)
    for level, expected in (("high", [active.pk]), ("medium", []), ("low", [])):
        body = client.get(f"/api/customers?riskLevel={level}").json()
        assert [row["id"] for row in body] == expected, level
    # The churned customer still shows its last prediction before churn.
    row = client.get(f"/api/customers/{churned.pk}").json()
    assert (row["churnRisk"], row["isActive"]) == ("90.00", False)
    assert client.get("/api/dashboard/metrics").json()["customersAtRisk"] == 1

    browser = Client()
    browser.force_login(admin_user)
    page = browser.get("/admin/customers/customer/?risk=high")
    assert page.status_code == 200
    assert [c.pk for c in page.context["cl"].result_list] == [active.pk]
