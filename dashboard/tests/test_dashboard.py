"""Dashboard figures are computed from the database: exact values for a small, known book."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from playbooks.models import Playbook, PlaybookExecution, PlaybookStepRun
from predictions.models import PortfolioSnapshot
from predictions.services import churn_causes_refresh, portfolio_snapshot_take
from tests.helpers import make_intervention, make_prediction


@pytest.fixture
def book(csm, make_customer):
    now = timezone.now()
    customers = [
        make_customer(owner=csm, churn_risk=Decimal("0.9000"), mrr=Decimal("1000")),
        make_customer(owner=csm, churn_risk=Decimal("0.8500"), mrr=Decimal("500")),
        make_customer(owner=csm, churn_risk=Decimal("0.2000"), mrr=Decimal("500")),
        make_customer(owner=csm, churn_risk=Decimal("0.9900"), mrr=Decimal("700"), is_active=False),
    ]
    make_intervention(customers[0], status="active")
    make_intervention(customers[1], status="pending")
    make_intervention(
        customers[2], status="completed", outcome="succeeded", revenue_impact=Decimal("6000"), completed_at=now
    )
    make_intervention(
        customers[2],
        status="completed",
        outcome="succeeded",
        revenue_impact=Decimal("3000"),
        completed_at=now - dt.timedelta(days=200),
    )
    make_intervention(customers[3], status="completed", outcome="failed", completed_at=now)
    # A month ago: 4 active customers, average risk 50 %, 1 at risk.
    PortfolioSnapshot.objects.create(
        date=timezone.localdate() - dt.timedelta(days=30),
        owner=csm,
        active_customers=4,
        at_risk_customers=1,
        risk_sum=2.0,
        mrr_sum=Decimal("2700"),
    )
    return customers


@pytest.mark.django_db
def test_metrics_from_real_rows(book, csm, api_for):
    body = api_for(csm).get("/api/dashboard/metrics").json()
    assert body == {
        "churnRisk": "65.0",  # (90 + 85 + 20) / 3 active customers
        "churnChange": 15.0,  # 65.0 now - 50.0 a month ago
        "customersAtRisk": 2,
        "riskChange": 100,  # 1 -> 2 at-risk customers
        "activeInterventions": 2,
        "successRate": 67,  # 2 of 3 decided interventions succeeded
        "revenueSaved": 6,  # $6,000 saved in the last 90 days, in thousands
        "revenueIncrease": 25,  # 6,000 / (2,000 MRR * 12)
    }


@pytest.mark.django_db
def test_metrics_on_an_empty_book(csm, api_for):
    assert api_for(csm).get("/api/dashboard/metrics").json() == {
        "churnRisk": "0.0",
        "churnChange": 0.0,
        "customersAtRisk": 0,
        "riskChange": 0,
        "activeInterventions": 0,
        "successRate": 0,
        "revenueSaved": 0,
        "revenueIncrease": 0,
    }


@pytest.mark.django_db
def test_chart_series_from_snapshots_with_live_last_point(book, csm, api_for):
    body = api_for(csm).get("/api/dashboard/chart-data?range=30d").json()
    assert len(body["labels"]) == 30
    # The contract's datasets only (the app draws every one it gets), churn risk first.
    assert [d["label"] for d in body["datasets"]] == ["Churn Risk %", "MRR"]
    risk, mrr = (dataset["data"] for dataset in body["datasets"])
    extra = api_for(csm).get("/api/dashboard/chart-data?range=30d&include=churnRate").json()
    assert [d["label"] for d in extra["datasets"]] == ["Churn Risk %", "MRR", "Churn Rate %"]
    assert extra["datasets"][:2] == body["datasets"]
    assert extra["datasets"][2]["data"][-1] == 0  # nobody churned today
    refused = api_for(csm).get("/api/dashboard/chart-data?include=churnRate,forecast")
    assert refused.status_code == 400 and list(refused.json()["errors"]) == ["include"]
    assert risk[-1] == 65.0 and mrr[-1] == 2000.0
    assert risk[:-1] == [None] * 29  # no snapshots inside the 30 daily buckets but the live one

    six = api_for(csm).get("/api/dashboard/chart-data").json()
    assert len(six["labels"]) == 6
    assert six["datasets"][0]["data"][-1] == 65.0
    month_ago = (timezone.localdate() - dt.timedelta(days=30)).strftime("%b")
    index = six["labels"].index(month_ago)
    if index < 5:  # the snapshot fell into an earlier month than the live one
        assert six["datasets"][0]["data"][index] == 50.0


@pytest.mark.django_db
def test_snapshot_and_cause_refresh_services(book, csm):
    make_prediction(book[0], "0.9000", causes=[{"cause": "Support issues"}, {"cause": "Low engagement"}])
    make_prediction(book[1], "0.8500", causes=[{"cause": "Support issues"}])
    assert portfolio_snapshot_take() == 1
    snapshot = PortfolioSnapshot.objects.get(date=timezone.localdate(), owner=csm)
    assert (snapshot.active_customers, snapshot.at_risk_customers, round(snapshot.risk_sum, 4), snapshot.mrr_sum) == (
        3,
        2,
        1.95,
        Decimal("2000.00"),
    )
    churn_causes_refresh()
    from predictions.models import ChurnCause

    support = ChurnCause.objects.get(cause="Support issues")
    assert (support.count, support.percent, support.impact, support.category) == (2, 67, "high", "support")
    assert ChurnCause.objects.get(cause="Low engagement").percent == 33


@pytest.mark.django_db
def test_ml_analytics_counts_the_playbook_work_on_the_users_active_customers(
    book, csm, other_csm, manager, make_customer, api_for
):
    """`interventionStats` of GET /api/ml/analytics: executions and their steps, over the active
    customers the user may see (a churned customer's and another CSM's are left out for a CSM)."""
    playbook = Playbook.objects.create(name="Check-in", steps=[])
    now = timezone.now()
    theirs = make_customer(owner=other_csm)

    def execution(customer, status, steps):
        run = PlaybookExecution.objects.create(playbook=playbook, customer=customer, started_at=now, status=status)
        for key, step_status in enumerate(steps):
            PlaybookStepRun.objects.create(
                execution=run, step_key=str(key), step_type="notify", status=step_status, started_at=now
            )

    execution(book[0], "completed", ["succeeded", "succeeded", "failed"])
    execution(book[1], "running", ["succeeded"])
    execution(book[3], "completed", ["succeeded"] * 5)  # churned: not in the book
    execution(theirs, "completed", ["failed"] * 4)

    mine = api_for(csm).get("/api/ml/analytics").json()["interventionStats"]
    assert mine == {"totalExecutions": 2, "successRate": 50.0, "avgStepsCompleted": 2, "avgIssuesFound": 0}
    everyone = api_for(manager).get("/api/ml/analytics").json()["interventionStats"]
    # 3 executions (book[0], book[1], theirs): 2 completed, 3 steps succeeded, 5 failed.
    assert everyone == {"totalExecutions": 3, "successRate": 66.7, "avgStepsCompleted": 1, "avgIssuesFound": 2}
