"""Contract tests (../shared/contract/API.md): status codes, exact field names and types, bare
arrays with Link/X-Total-Count pagination, no trailing slashes, and query counts per list."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.api.serializers import CustomerDetailSerializer, CustomerOutputSerializer
from customers.models import BillingEvent, NpsResponse, SupportTicket, UserSession
from integrations.models import Integration, SyncRun
from playbooks.models import EmailReview, Playbook, PlaybookExecution, PlaybookStepRun
from predictions.models import ChurnCause
from tests.helpers import make_alert, make_intervention, make_prediction, schema_operations

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
CUSTOMER_FIELDS = {
    "id": int,
    "name": str,
    "email": str,
    "company": str,
    "plan": str,
    "mrr": str,
    "signupDate": str,
    "lastLogin": (str, type(None)),
    "healthScore": int,
    "churnRisk": str,
    "churnProbability": float,
    "riskLevel": str,
    "npsScore": (int, type(None)),
    "supportTickets": int,
    "featureUsage": dict,
    "isActive": bool,
    "churnedAt": (str, type(None)),
    "ownerId": (int, type(None)),
    "ownerName": (str, type(None)),
}
INTERVENTION_FIELDS = {
    "id",
    "customerId",
    "type",
    "status",
    "priority",
    "assignedCsm",
    "description",
    "nextAction",
    "dueDate",
    "createdAt",
    "completedAt",
    "notes",
    "outcome",
}


def assert_shape(obj: dict, fields: dict) -> None:
    assert set(obj) == set(fields), set(obj) ^ set(fields)
    for name, kind in fields.items():
        assert isinstance(obj[name], kind), (name, obj[name])


@pytest.mark.django_db
def test_customer_list_shape_and_values(csm, make_customer, api_for):
    customer = make_customer(
        owner=csm, mrr=Decimal("547.49"), churn_risk=Decimal("0.7325"), nps_score=None, feature_usage={"api_calls": 117}
    )
    response = api_for(csm).get("/api/customers")
    assert response.status_code == 200
    assert response["X-Total-Count"] == "1"
    body = response.json()
    assert isinstance(body, list) and len(body) == 1
    row = body[0]
    assert_shape(row, CUSTOMER_FIELDS)
    assert row["id"] == customer.pk
    assert row["mrr"] == "547.49"
    assert row["churnRisk"] == "73.25"
    assert row["churnProbability"] == 0.7325
    assert row["riskLevel"] == "medium"
    assert row["npsScore"] is None
    assert row["featureUsage"] == {"api_calls": 117}
    assert row["ownerId"] == csm.pk and row["ownerName"] == csm.get_full_name()
    assert ISO_Z.match(row["signupDate"]) and ISO_Z.match(row["lastLogin"])


def test_documented_customer_shape_matches_rendered_shape():
    # The lean renderer and the serializer that documents it in OpenAPI name the same fields.
    assert set(CustomerOutputSerializer().fields) == set(CUSTOMER_FIELDS)
    assert set(CustomerDetailSerializer().fields) == set(CUSTOMER_FIELDS) | {"latestPrediction", "openInterventions"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("risk", "level"), [("0.8000", "high"), ("0.7999", "medium"), ("0.5000", "medium"), ("0.4999", "low")]
)
def test_risk_level_thresholds(csm, make_customer, api_for, risk, level):
    customer = make_customer(owner=csm, churn_risk=Decimal(risk))
    assert api_for(csm).get(f"/api/customers/{customer.pk}").json()["riskLevel"] == level


@pytest.mark.django_db
def test_customer_detail_adds_latest_prediction_and_open_interventions(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    make_prediction(customer, "0.4000", days_ago=3)
    latest = make_prediction(customer, "0.9100", days_ago=0)
    make_intervention(customer, status="active")
    make_intervention(customer, status="completed")
    body = api_for(csm).get(f"/api/customers/{customer.pk}").json()
    assert body["openInterventions"] == 1
    assert body["latestPrediction"] == {
        "churnProbability": 0.91,
        "riskLevel": "high",
        "topCauses": [{**latest.top_causes[0], "impact": 30.0}],  # stored 0.3: shown in percent, as predict
        "predictionDate": body["latestPrediction"]["predictionDate"],
        "modelVersion": "test",
    }
    assert ISO_Z.match(body["latestPrediction"]["predictionDate"])


@pytest.mark.django_db
def test_customer_404_has_contract_message(csm, api_for):
    response = api_for(csm).get("/api/customers/424242")
    assert response.status_code == 404
    assert response.json()["message"] == "Customer not found"


@pytest.mark.django_db
def test_no_trailing_slash_routes(csm, api_for):
    client = api_for(csm)
    assert client.get("/api/customers/").status_code == 404
    assert client.post("/api/interventions/", {}, format="json").status_code == 404


@pytest.mark.django_db
def test_pagination_headers_and_bounds(manager, make_customer, api_for):
    for _ in range(7):
        make_customer()
    client = api_for(manager)
    first = client.get("/api/customers?per_page=3")
    assert [c["id"] for c in first.json()] == sorted(c["id"] for c in first.json())
    assert len(first.json()) == 3
    assert first["X-Total-Count"] == "7"
    assert 'rel="next"' in first["Link"] and "page=2" in first["Link"] and 'rel="last"' in first["Link"]
    assert 'rel="prev"' not in first["Link"]
    last = client.get("/api/customers?per_page=3&page=3")
    assert len(last.json()) == 1
    assert 'rel="prev"' in last["Link"] and 'rel="next"' not in last["Link"]
    assert client.get("/api/customers?per_page=3&page=9").status_code == 404
    huge = client.get("/api/customers?per_page=1000000")
    assert huge.status_code == 200 and len(huge.json()) == 7  # capped, not refused


@pytest.mark.django_db
def test_customer_filters_search_and_ordering(manager, make_customer, api_for):
    a = make_customer(name="Acme Corp", plan="Enterprise", churn_risk=Decimal("0.9"), health_score=20)
    b = make_customer(name="Beta LLC", plan="Pro", churn_risk=Decimal("0.6"), health_score=60)
    c = make_customer(name="Gamma", plan="Pro", churn_risk=Decimal("0.1"), health_score=90, is_active=False)
    client = api_for(manager)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/customers?{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()]

    assert ids("search=acme") == [a.pk]
    assert ids("plan=pro") == [b.pk, c.pk]
    assert ids("riskLevel=high") == [a.pk]
    assert ids("riskLevel=medium") == [b.pk]
    assert ids("isActive=false") == [c.pk]
    assert ids("minHealth=50&maxHealth=70") == [b.pk]
    assert ids("ordering=-churnRisk") == [a.pk, b.pk, c.pk]
    assert client.get("/api/customers?riskLevel=extreme").status_code == 400


@pytest.mark.django_db
def test_pages_through_ties_show_every_customer_once(csm, other_csm, make_customer, api_for):
    """A page is chosen by id first (CustomerPages): ties in the ordering are broken by id, and
    a CSM's pages hold their own customers only, in the same order as one big page."""
    mine = [make_customer(owner=csm, churn_risk=Decimal("0.5") if n % 2 else Decimal("0.7")) for n in range(7)]
    make_customer(owner=other_csm, churn_risk=Decimal("0.9"))
    client = api_for(csm)
    for ordering in ("-churnRisk", "churnRisk", "-id", "name"):
        whole = [row["id"] for row in client.get(f"/api/customers?ordering={ordering}&per_page=100").json()]
        paged = [
            row["id"]
            for page in (1, 2, 3)
            for row in client.get(f"/api/customers?ordering={ordering}&per_page=3&page={page}").json()
        ]
        assert paged == whole and sorted(whole) == sorted(c.pk for c in mine), ordering
    by_risk = [row["id"] for row in client.get("/api/customers?ordering=-churnRisk").json()]
    high = sorted(c.pk for c in mine if c.churn_risk == Decimal("0.7"))
    assert by_risk == high + sorted(c.pk for c in mine if c.churn_risk == Decimal("0.5"))


@pytest.mark.django_db
def test_sessions_shape(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    now = timezone.now()
    UserSession.objects.create(customer=customer, started_at=now - dt.timedelta(hours=2), pages_viewed=3, actions=["a"])
    newest = UserSession.objects.create(
        customer=customer, started_at=now, ended_at=now + dt.timedelta(minutes=5), pages_viewed=9, actions=["x", "y"]
    )
    response = api_for(csm).get(f"/api/customers/{customer.pk}/sessions")
    assert response.status_code == 200 and response["X-Total-Count"] == "2"
    body = response.json()
    assert set(body[0]) == {"id", "customerId", "startedAt", "endedAt", "pagesViewed", "actions"}
    assert body[0]["id"] == newest.pk and body[0]["pagesViewed"] == 9 and body[0]["actions"] == ["x", "y"]
    assert body[1]["endedAt"] is None


@pytest.mark.django_db
def test_timeline_merges_every_source_newest_first_and_pages_by_cursor(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    now = timezone.now()
    same = now - dt.timedelta(hours=5)
    UserSession.objects.create(customer=customer, started_at=same, pages_viewed=1)
    UserSession.objects.create(customer=customer, started_at=same, pages_viewed=2)
    SupportTicket.objects.create(customer=customer, subject="Export broken", opened_at=now - dt.timedelta(hours=4))
    NpsResponse.objects.create(customer=customer, score=3, responded_at=now - dt.timedelta(hours=3))
    BillingEvent.objects.create(
        customer=customer, kind="payment_failed", amount=100, occurred_at=now - dt.timedelta(hours=2)
    )
    make_intervention(customer)
    make_alert(customer)
    make_prediction(customer)
    client = api_for(csm)

    everything = client.get(f"/api/customers/{customer.pk}/timeline?per_page=100").json()
    assert len(everything) == 8
    assert {e["type"] for e in everything} == {
        "session",
        "support_ticket",
        "nps_response",
        "billing",
        "intervention",
        "alert",
        "prediction",
    }
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)
    assert set(everything[0]) == {"type", "at", "title", "detail", "ref"}

    seen, url = [], f"/api/customers/{customer.pk}/timeline?per_page=2"
    while url:
        response = client.get(url)
        seen.extend(response.json())
        link = response.headers.get("Link")
        url = re.search(r"<([^>]+)>", link).group(1) if link else None
    assert [(e["type"], e["ref"]["id"]) for e in seen] == [(e["type"], e["ref"]["id"]) for e in everything]
    assert client.get(f"/api/customers/{customer.pk}/timeline?cursor=garbage").status_code == 400


@pytest.mark.django_db
def test_intervention_create_defaults_and_shape(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    response = api_for(csm).post(
        "/api/interventions",
        {
            "customerId": customer.pk,
            "type": "Onboarding Call",
            "priority": "high",
            "description": "Walk through setup",
            "nextAction": "Schedule call",
            "notes": "n",
            "dueDate": "2026-12-01T10:00:00.000Z",
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == INTERVENTION_FIELDS
    assert body["status"] == "active"
    assert body["assignedCsm"] == csm.get_full_name()
    assert body["dueDate"] == "2026-12-01T10:00:00Z"
    assert body["completedAt"] is None and ISO_Z.match(body["createdAt"])


@pytest.mark.django_db
def test_intervention_patch_completes_and_sets_completed_at(csm, make_customer, api_for):
    intervention = make_intervention(make_customer(owner=csm))
    response = api_for(csm).patch(f"/api/interventions/{intervention.pk}", {"status": "completed"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "completed" and response.json()["completedAt"]
    explicit = api_for(csm).patch(
        f"/api/interventions/{intervention.pk}", {"completedAt": "2026-11-24T00:00:00.000Z"}, format="json"
    )
    assert explicit.json()["completedAt"] == "2026-11-24T00:00:00Z"


@pytest.mark.django_db
def test_bulk_actions(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    one, two = make_intervention(customer, notes="old"), make_intervention(customer)
    client = api_for(csm)
    response = client.post(
        "/api/interventions/bulk", {"taskIds": [str(one.pk), two.pk], "action": "escalate"}, format="json"
    )
    assert response.json() == {
        "success": True,
        "updated": 2,
        "total": 2,
        "action": "escalate",
        "results": [{"id": one.pk, "status": "success"}, {"id": two.pk, "status": "success"}],
    }
    one.refresh_from_db()
    assert one.priority == "high"
    client.post("/api/interventions/bulk", {"taskIds": [one.pk], "action": "fail", "notes": "no answer"}, format="json")
    one.refresh_from_db()
    assert one.status == "cancelled" and one.notes == "old\nno answer"
    client.post("/api/interventions/bulk", {"taskIds": [two.pk], "action": "complete"}, format="json")
    two.refresh_from_db()
    assert two.status == "completed" and two.completed_at is not None


@pytest.mark.django_db
def test_bulk_apply_creates_one_intervention_per_customer(csm, make_customer, api_for):
    a, b = make_customer(owner=csm), make_customer(owner=csm)
    response = api_for(csm).post(
        "/api/interventions/bulk-apply",
        {"userIds": [a.pk, b.pk, a.pk], "interventionType": "agent_retention_call", "notes": "batch"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Applied agent_retention_call to 2 users",
        "updated": 2,
        "total": 2,
    }
    assert sorted(a.interventions.values_list("type", flat=True)) == ["agent_retention_call"]
    assert b.interventions.get().notes == "batch"


@pytest.mark.django_db
def test_alerts_shape_and_mark_read(csm, make_customer, api_for):
    alert = make_alert(make_customer(owner=csm), title="High churn risk: Acme", severity="critical")
    client = api_for(csm)
    body = client.get("/api/alerts").json()
    assert body == [
        {
            "id": alert.pk,
            "title": "High churn risk: Acme",
            "description": "Risk rose",
            "severity": "critical",
            "isRead": False,
            "createdAt": body[0]["createdAt"],
            "customerId": alert.customer_id,
        }
    ]
    assert client.patch(f"/api/alerts/{alert.pk}/read").json() == {"success": True}
    alert.refresh_from_db()
    assert alert.read is True
    assert [a["id"] for a in client.get("/api/alerts?isRead=false").json()] == []


@pytest.mark.django_db
def test_integrations_never_expose_secrets(csm, api_for):
    Integration.objects.create(
        name="Stripe",
        type="payment",
        status="connected",
        config={"api_key": "sk_live_1", "webhook_signing_secret": "whsec_1", "nested": {"token": "t", "region": "eu"}},
    )
    body = api_for(csm).get("/api/integrations").json()
    assert body[0]["config"] == {"nested": {"region": "eu"}}
    contract = {"id", "name", "type", "status", "lastSyncAt", "config"}
    # Integration health beside the contract's fields.
    health = {"provider", "lagSeconds", "consecutiveFailures", "failedRuns24h", "latestError", "latestErrorAt"}
    assert set(body[0]) == contract | health | {"webhookBacklog", "deadLetters"}


def _count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.content)
    return len(queries)


def _schema_reads() -> list[str]:
    """Every GET operation the API documents: a new read endpoint is checked the day it exists."""
    return sorted(path for method, path in schema_operations() if method == "GET")


def _grow_everything(csm, anchor, make_customer, n: int) -> dict:
    """n more rows in every table a read endpoint lists or aggregates, in `csm`'s portfolio; half
    of them hang off `anchor` (the customer, intervention and execution the detail paths name)."""
    now = timezone.now()
    for i in range(n):
        customer = make_customer(owner=csm)
        make_intervention(customer)
        make_intervention(anchor, status="completed", outcome="succeeded", completed_at=now)
        make_alert(customer)
        make_alert(anchor)
        make_prediction(customer)
        make_prediction(anchor, days_ago=i + 1)
        UserSession.objects.create(customer=anchor, started_at=now - dt.timedelta(minutes=i))
        SupportTicket.objects.create(customer=anchor, subject=f"Ticket {i}", opened_at=now - dt.timedelta(hours=i))
        integration = Integration.objects.create(name=f"Integration {Integration.objects.count()}", type="crm")
        SyncRun.objects.create(integration=integration, status="failed", started_at=now, error="timeout")
        playbook = Playbook.objects.create(
            name=f"Playbook {Playbook.objects.count()}",
            steps=[{"key": "a", "type": "create_alert", "title": "t", "message": "m"}],
        )
        execution = PlaybookExecution.objects.create(playbook=playbook, customer=customer, started_at=now)
        PlaybookStepRun.objects.create(
            execution=execution, step_key="a", step_type="create_alert", status="succeeded", started_at=now
        )
        EmailReview.objects.create(
            execution=execution, step_key="mail", playbook=playbook, customer=customer, to=customer.email
        )
        ChurnCause.objects.create(cause=f"Cause {ChurnCause.objects.count()}", count=i, percent=i)
    execution = PlaybookExecution.objects.filter(customer=anchor).first() or PlaybookExecution.objects.create(
        playbook=Playbook.objects.order_by("pk").first(), customer=anchor, started_at=now
    )
    PlaybookStepRun.objects.bulk_create(
        PlaybookStepRun(
            execution=execution,
            step_key=f"s{execution.step_runs.count()}-{i}",
            step_type="wait",
            status="succeeded",
            started_at=now,
        )
        for i in range(n)
    )
    from customers.models import ImportJob

    review, _ = EmailReview.objects.get_or_create(
        execution=execution, step_key="mail", defaults={"playbook": execution.playbook, "customer": anchor}
    )
    job = ImportJob.objects.order_by("pk").first() or ImportJob.objects.create(files=[])
    job.errors += [["nps_responses.csv", i + 2, "score", "score: 11 is out of range."] for i in range(n)]
    job.save(update_fields=["errors"])
    return {
        "customers": anchor.pk,
        "interventions": anchor.interventions.order_by("pk").first().pk,
        "playbook-executions": execution.pk,
        "imports": job.pk,
        "playbook-email-reviews": review.pk,
    }


def _concrete(path: str, ids: dict) -> str:
    if "{id}" not in path:
        return path
    return path.replace("{id}", str(ids[path.split("/")[2]]))


def test_query_count_covers_every_read_endpoint():
    # The parametrisation below is the schema's GET operations; this pins that it finds them.
    reads = _schema_reads()
    assert {"/api/customers", "/api/customers/{id}/timeline", "/api/dashboard/metrics"} <= set(reads)
    assert all(("{" not in path) or (path.count("{") == 1 and "{id}" in path) for path in reads), reads


@pytest.mark.django_db
@pytest.mark.parametrize("path", _schema_reads())
def test_query_count_is_constant_as_rows_grow(csm, manager, make_customer, api_for, path):
    from predictions.services.registry import model_promote, rules_version

    model_promote(rules_version(), "query-count test")
    client = api_for(manager if path.startswith("/api/imports") else csm)  # imports: managers and admins
    anchor = make_customer(owner=csm)
    ids = _grow_everything(csm, anchor, make_customer, 2)
    url = _concrete(path, ids)
    client.get(url)  # warm per-process caches (content types, the champion model)
    small = _count_queries(client, url)
    _grow_everything(csm, anchor, make_customer, 20)
    large = _count_queries(client, url)
    assert small == large, f"{url}: {small} queries with few rows, {large} with more"
    assert large <= 12
