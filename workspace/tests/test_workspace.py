"""The CSM's workspace in the admin: the home (cockpit), the customer 360 and activity logging.

Real database, real admin views through Django's test client; query counts are fixed per page.
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alerts.services import alert_create
from customers.models import Customer, NpsResponse, SupportTicket, UserSession
from customers.selectors import risk_thresholds
from interventions.models import Intervention
from interventions.selectors import intervention_analytics
from interventions.services import activity_log
from playbooks.selectors import playbook_analytics
from predictions.models import ChurnPrediction, PortfolioSnapshot
from predictions.services import portfolio_snapshot_take
from predictions.services.portfolio import RISKIEST_PER_OWNER
from workspace.selectors import AT_RISK_ROWS

pytestmark = pytest.mark.django_db
HOME = "/admin/"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def change_url(customer) -> str:
    return reverse("admin:customers_customer_change", args=[customer.pk])


def log_url(customer) -> str:
    return reverse("admin:customers_customer_log_activity", args=[customer.pk])


def queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(captured)


def predict(customer, probability: str, days_ago: float, causes=None, health: int = 60) -> ChurnPrediction:
    return ChurnPrediction.objects.create(
        customer=customer,
        churn_probability=Decimal(probability),
        risk_level="high" if Decimal(probability) >= Decimal("0.8") else "medium",
        top_causes=causes or [],
        prediction_date=timezone.now() - dt.timedelta(days=days_ago),
        health_score=health,
        model_version="xgb-test",
    )


ENGAGEMENT = {
    "cause": "Low engagement",
    "factor": "Actions per session (30 days)",
    "value": "Actions per session (30 days): 1.6 — retained customers: 2.6",
    "impact": 0.61,
}


# --- Activities ---------------------------------------------------------------------------------


def test_logging_a_call_with_a_follow_up_records_the_touch_and_a_dated_task(make_customer, csm):
    customer = make_customer(owner=csm)
    response = client_for(csm).post(
        log_url(customer), {"activity": "call", "notes": "Champion left; new VP wants a QBR", "follow_up": "2030-01-15"}
    )
    assert response.status_code == 302 and response["Location"] == change_url(customer)
    touch, task = Intervention.objects.filter(customer=customer).order_by("id")
    assert (touch.type, touch.activity, touch.status, touch.notes, touch.created_by) == (
        "Call",
        "call",
        "completed",
        "Champion left; new VP wants a QBR",
        csm,
    )
    assert touch.completed_at is not None
    assert (task.type, task.activity, task.status, task.description) == (
        "Follow up: call",
        "",
        "pending",
        "Champion left; new VP wants a QBR",
    )
    assert timezone.localtime(task.due_date).replace(tzinfo=None) == dt.datetime(2030, 1, 15, 9, 0)


def test_a_logged_activity_stays_on_the_timeline_once_completed(make_customer, csm):
    customer = make_customer(owner=csm)
    activity_log(user=csm, customer_id=customer.pk, activity="qbr", notes="Renewal looks safe")
    page = client_for(csm).get(change_url(customer))
    events = page.context["workspace"]["timeline"]["events"]
    logged = [e for e in events if e["type"] == "intervention"]
    assert [(e["title"], e["detail"]) for e in logged] == [
        (f"QBR logged by {csm.get_full_name()}", "Renewal looks safe")
    ]
    assert page.context["workspace"]["open_work"] == []  # done work is history, not open work


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"activity": "call", "notes": ""}, "Notes"),
        ({"activity": "fax", "notes": "x"}, "Activity"),
        ({"activity": "call", "notes": "x", "follow_up": "tomorrow"}, "Follow up on"),
    ],
)
def test_bad_activity_input_writes_nothing_and_names_the_field(make_customer, csm, data, field):
    customer = make_customer(owner=csm)
    client = client_for(csm)
    response = client.post(log_url(customer), data, follow=True)
    assert response.status_code == 200
    assert Intervention.objects.count() == 0
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith(f"Activity not logged. {field}:")


def test_another_csms_customer_is_404_and_a_viewer_is_refused(make_customer, csm, other_csm, viewer):
    theirs = make_customer(owner=other_csm)
    data = {"activity": "note", "notes": "x"}
    assert client_for(csm).post(log_url(theirs), data).status_code == 404
    assert client_for(csm).get(log_url(theirs)).status_code == 404
    assert client_for(viewer).post(log_url(theirs), data).status_code == 403
    assert Intervention.objects.count() == 0
    assert 'id="cs-activity-form"' not in client_for(viewer).get(change_url(theirs)).content.decode()


def test_intervention_analytics_leave_logged_activities_out(make_customer, csm):
    customer = make_customer(owner=csm)
    activity_log(user=csm, customer_id=customer.pk, activity="note", notes="x")
    Intervention.objects.create(customer=customer, type="Executive Check-in", status="completed", outcome="succeeded")
    metrics = intervention_analytics(user=csm, playbooks=playbook_analytics(user=csm))["overall_metrics"]
    assert (metrics["total_interventions"], metrics["completed_interventions"]) == (1, 1)


# --- Home ---------------------------------------------------------------------------------------


def test_csm_home_lists_their_riskiest_customers_work_due_and_alerts(make_customer, csm, other_csm):
    now = timezone.now()
    risky = make_customer(owner=csm, name="Initech", churn_risk=Decimal("0.8500"), mrr=Decimal("1200.00"))
    calm = make_customer(owner=csm, name="Globex", churn_risk=Decimal("0.3000"))
    make_customer(owner=csm, name="Gone", churn_risk=Decimal("0.9900"), is_active=False)
    theirs = make_customer(owner=other_csm, name="Rival Corp", churn_risk=Decimal("0.9500"))
    predict(risky, "0.6000", days_ago=10)
    predict(risky, "0.8500", days_ago=0, causes=[ENGAGEMENT])
    activity_log(user=csm, customer_id=risky.pk, activity="call", notes="left a voicemail")
    Intervention.objects.create(customer=risky, type="Exec call", due_date=now - dt.timedelta(days=2))
    Intervention.objects.create(customer=calm, type="Training", due_date=now.replace(hour=23, minute=0))
    Intervention.objects.create(customer=calm, type="Later", due_date=now + dt.timedelta(days=3))
    Intervention.objects.create(customer=theirs, type="Their task", due_date=now - dt.timedelta(days=1))
    alert_create(title="Risk up for Initech", message="m", customer_id=risky.pk)
    alert_create(title="Risk up for Rival Corp", message="m", customer_id=theirs.pk)

    response = client_for(csm).get(HOME)
    cockpit = response.context["cockpit"]
    rows = cockpit["at_risk"]["rows"]
    assert [(r["name"], r["risk"], r["level"], r["change"], r["cause"]) for r in rows] == [
        ("Initech", 85.0, "high", 25.0, "Low engagement"),
        ("Globex", 30.0, "low", None, ""),
    ]
    assert rows[0]["cause_text"] == ENGAGEMENT["value"]
    assert rows[0]["last_touch"] is not None and rows[1]["last_touch"] is None
    assert (cockpit["at_risk"]["high"], cockpit["at_risk"]["medium"], cockpit["at_risk"]["mrr_at_risk"]) == (
        1,
        0,
        Decimal("1200.00"),
    )
    work = cockpit["work"]
    assert [(t["type"], t["overdue"]) for t in work["rows"]] == [("Exec call", True), ("Training", False)]
    assert (work["overdue"], work["today"], work["open"]) == (1, 1, 3)
    assert [a.title for a in cockpit["alerts"]["rows"]] == ["Risk up for Initech"]
    assert cockpit["team"] is False and cockpit["workload"] is None
    html = response.content.decode()
    assert "Rival" not in html and "My riskiest customers" in html
    assert "Actions per session (30 days): 1.6 — retained customers: 2.6" in html
    assert reverse("admin:apps") in html


def test_manager_home_shows_the_team_workload_and_the_trend_with_model_changes(make_customer, csm, other_csm, manager):
    now = timezone.now()
    mine = make_customer(owner=csm, churn_risk=Decimal("0.7000"), mrr=Decimal("100.00"))
    make_customer(owner=other_csm, churn_risk=Decimal("0.1000"))
    Intervention.objects.create(customer=mine, type="A", due_date=now - dt.timedelta(days=3))
    Intervention.objects.create(customer=mine, type="B")
    today = timezone.localdate()
    for days in range(10):
        PortfolioSnapshot.objects.create(
            date=today - dt.timedelta(days=days), owner=csm, active_customers=2, at_risk_customers=1, risk_sum=0.8
        )
    from predictions.models import ModelVersion, PredictionRun

    rules = ModelVersion.objects.create(version="rules-1", kind="rules", trained_at=now, as_of=now)
    PredictionRun.objects.create(
        run_key="b0", model_version=rules, started_at=now - dt.timedelta(days=9), status="completed"
    )  # the book's first model: no switch, no marker
    version = ModelVersion.objects.create(version="xgb-7", kind="xgboost", trained_at=now, as_of=now)
    PredictionRun.objects.create(
        run_key="b1", model_version=version, started_at=now - dt.timedelta(days=4), status="completed"
    )

    response = client_for(manager).get(HOME)
    cockpit = response.context["cockpit"]
    assert cockpit["team"] is True
    assert [
        (r["owner"], r["active"], r["at_risk"], r["mrr_at_risk"], r["open"], r["overdue"]) for r in cockpit["workload"]
    ] == [
        (csm.get_full_name(), 1, 1, Decimal("100.00"), 2, 1),
        (other_csm.get_full_name(), 1, 0, 0, 0, 0),
    ]
    assert cockpit["trend"]["markers"] == [(timezone.localdate(now - dt.timedelta(days=4)), "model xgb-7")]
    html = response.content.decode()
    assert "Team workload" in html and 'class="cs-marker"' in html and "<polyline" in html


def test_manager_home_reads_the_book_as_the_batch_counted_it_and_says_when(make_customer, csm, other_csm, manager):
    medium, high = risk_thresholds()
    assert AT_RISK_ROWS <= RISKIEST_PER_OWNER  # the book's riskiest are among the owners' riskiest
    first = make_customer(owner=csm, name="First", churn_risk=Decimal("0.9000"), mrr=Decimal("300.00"))
    make_customer(owner=csm, name="Second", churn_risk=Decimal(str(medium)), mrr=Decimal("200.00"))
    make_customer(owner=csm, name="Calm", churn_risk=Decimal("0.0500"), mrr=Decimal("999.00"))
    make_customer(owner=csm, name="Gone", churn_risk=Decimal("0.9900"), is_active=False)
    theirs = make_customer(owner=other_csm, name="Theirs", churn_risk=Decimal("0.8500"), mrr=Decimal("50.00"))
    portfolio_snapshot_take()
    counted = {  # the figures as the batch counted them, straight from the tables
        "high": Customer.objects.filter(is_active=True, churn_risk__gte=high).count(),
        "medium": Customer.objects.filter(is_active=True, churn_risk__gte=medium, churn_risk__lt=high).count(),
        "active": Customer.objects.filter(is_active=True).count(),
    }
    # After the count: one customer's risk falls, a new risky customer arrives.
    Customer.objects.filter(pk=first.pk).update(churn_risk=Decimal("0.1000"))
    make_customer(owner=other_csm, name="Arrived later", churn_risk=Decimal("0.9900"))

    response = client_for(manager).get(HOME)
    cockpit = response.context["cockpit"]
    risk = cockpit["at_risk"]
    assert (risk["high"], risk["medium"], risk["active"]) == (counted["high"], counted["medium"], counted["active"])
    assert (risk["high"], risk["medium"], risk["active"], risk["mrr_at_risk"]) == (2, 1, 4, Decimal("550.00"))
    # The candidates are the counted riskiest, ranked by their risk now; later arrivals wait for the next count.
    assert [row["name"] for row in risk["rows"]] == ["Theirs", "Second", "First", "Calm"]
    assert risk["rows"][2]["risk"] == 10.0
    workload = {
        row["owner"]: (row["active"], row["high"], row["at_risk"], row["mrr_at_risk"]) for row in cockpit["workload"]
    }
    assert workload == {
        csm.get_full_name(): (3, 1, 2, Decimal("500.00")),
        other_csm.get_full_name(): (1, 1, 1, Decimal("50.00")),
    }
    counted_at = PortfolioSnapshot.objects.filter(taken_at__isnull=False).values_list("taken_at", flat=True).first()
    assert cockpit["counted_at"] == counted_at
    html = response.content.decode()
    assert "Customers and risk as counted by the daily scoring run" in html and "work live" in html
    assert "Arrived later" not in html and theirs.name in html

    # A CSM's home stays live: the risk that fell after the count is what they see.
    mine = client_for(csm).get(HOME).context["cockpit"]
    assert (mine["at_risk"]["high"], mine["counted_at"]) == (0, None)


def test_a_user_without_a_role_gets_an_empty_home(make_user, make_customer):
    make_customer(name="Initech")
    response = client_for(make_user(role=None)).get(HOME)
    assert response.context["cockpit"] is None
    assert "Initech" not in response.content.decode()


@pytest.mark.parametrize("role", ["csm", "manager"])
def test_home_costs_the_same_queries_with_more_customers_work_and_alerts(request, make_customer, role):
    user = request.getfixturevalue(role)
    owner = user if role == "csm" else request.getfixturevalue("csm")
    client = client_for(user)

    def grow(count: int) -> None:
        for n in range(count):
            customer = make_customer(owner=owner, churn_risk=Decimal("0.6000") + Decimal(n) / 1000)
            predict(customer, "0.6000", days_ago=9, causes=[ENGAGEMENT])
            Intervention.objects.create(customer=customer, type="t", due_date=timezone.now() - dt.timedelta(days=1))
            activity_log(user=owner, customer_id=customer.pk, activity="note", notes="n")
            alert_create(title="a", message="m", customer_id=customer.pk)

    grow(2)
    client.get(HOME)
    few = queries(client, HOME)
    grow(20)
    assert queries(client, HOME) == few
    assert few == {"csm": 13, "manager": 16}[role]
    portfolio_snapshot_take()  # the batch has counted the book: the team home reads that instead
    assert queries(client, HOME) == {"csm": 13, "manager": 15}[role]


# --- Customer 360 -------------------------------------------------------------------------------


def test_customer_page_leads_with_risk_causes_nps_and_one_line_identity_inputs(make_customer, csm):
    customer = make_customer(owner=csm, churn_risk=Decimal("0.6781"), health_score=41)
    predict(customer, "0.5000", days_ago=40, health=55)
    predict(customer, "0.6781", days_ago=1, causes=[ENGAGEMENT], health=41)
    predict(customer, "0.1000", days_ago=200)  # older than twelve weeks: not on the chart
    now = timezone.now()
    NpsResponse.objects.create(customer=customer, score=9, comment="old", responded_at=now - dt.timedelta(days=90))
    NpsResponse.objects.create(customer=customer, score=4, comment="Exports keep failing", responded_at=now)
    response = client_for(csm).get(change_url(customer))
    workspace = response.context["workspace"]
    assert (workspace["risk"], workspace["level"], workspace["health"]) == (67.8, "medium", 41)
    assert workspace["causes"] == [{"cause": "Low engagement", "text": ENGAGEMENT["value"], "impact": 61}]
    assert (workspace["nps"].score, workspace["nps"].comment) == (4, "Exports keep failing")
    assert workspace["trend"]["points"] == 2
    html = response.content.decode()
    assert "67.8%" in html and "0.6781" not in html
    assert "Exports keep failing" in html
    for field in ("name", "email", "company", "plan"):
        assert f'<input type="text" name="{field}"' in html
        assert f'<textarea name="{field}"' not in html
    form = response.context["adminform"].form
    assert "churn_risk" not in form.fields and "health_score" not in form.fields  # read-only


def test_timeline_filters_and_sessions_one_row_a_day(make_customer, csm):
    customer = make_customer(owner=csm)
    noon = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    for hours in (0, 1, 2, 24):
        UserSession.objects.create(
            customer=customer, started_at=noon - dt.timedelta(days=2, hours=hours), pages_viewed=3
        )
    SupportTicket.objects.create(customer=customer, subject="Export broken", opened_at=noon - dt.timedelta(days=1))
    client = client_for(csm)
    events = client.get(change_url(customer)).context["workspace"]["timeline"]["events"]
    assert [(e["type"], e["title"]) for e in events] == [
        ("support_ticket", "Support ticket opened: Export broken"),
        ("session_day", "3 sessions, 9 pages viewed"),
        ("session_day", "1 session, 3 pages viewed"),
    ]
    only_tickets = client.get(change_url(customer) + "?timeline=tickets").context["workspace"]["timeline"]["events"]
    assert [e["type"] for e in only_tickets] == ["support_ticket"]
    only_sessions = client.get(change_url(customer) + "?timeline=sessions").context["workspace"]["timeline"]["events"]
    assert [e["type"] for e in only_sessions] == ["session_day", "session_day"]


def test_customer_page_costs_the_same_queries_as_its_history_grows(make_customer, csm):
    customer = make_customer(owner=csm)
    client = client_for(csm)
    path = change_url(customer)

    def grow(count: int) -> None:
        now = timezone.now()
        for n in range(count):
            UserSession.objects.create(customer=customer, started_at=now - dt.timedelta(hours=7 * n), pages_viewed=2)
            predict(customer, "0.5000", days_ago=n, causes=[ENGAGEMENT])
            SupportTicket.objects.create(customer=customer, subject=f"t{n}", opened_at=now)
            NpsResponse.objects.create(customer=customer, score=5, responded_at=now)
            activity_log(user=csm, customer_id=customer.pk, activity="call", notes="n", follow_up_at=now)
            alert_create(title="a", message="m", customer_id=customer.pk)

    grow(2)
    client.get(path)
    few = queries(client, path)
    grow(20)
    assert queries(client, path) == few
    assert few == 25


def test_customer_page_reads_nps_score_and_says_when_no_intervention_has_finished(make_customer, csm):
    customer = make_customer(owner=csm, churn_risk=Decimal("0.9000"), nps_score=3)
    predict(customer, "0.9000", days_ago=0, causes=[ENGAGEMENT])
    response = client_for(csm).get(change_url(customer))
    reasoning = response.context["workspace"]["recommendation"].reasoning
    assert (
        reasoning
        == "Recommended because its top churn cause is low engagement; no intervention has a recorded outcome yet."
    )
    other = make_customer(owner=csm)
    Intervention.objects.create(customer=other, type="Training", status="completed", outcome="succeeded")
    reasoning = client_for(csm).get(change_url(customer)).context["workspace"]["recommendation"].reasoning
    assert reasoning == (
        "Recommended because its top churn cause is low engagement; no Executive Check-in for a high-risk "
        "customer has a recorded outcome yet (success rate across all interventions 100%)."
    )
    html = response.content.decode()
    assert "0 of 0" not in html and "Nps score" not in html and "Mrr" not in html
    assert ">NPS score:</label>" in html and ">MRR:</label>" in html
