"""The trigger endpoint's contract, bad input and permissions; validation, dry run, bulk, executions."""

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils.html import escape

from interventions.models import Intervention
from playbooks import selectors
from playbooks.defaults import DEFAULT_PLAYBOOKS
from playbooks.models import Playbook, PlaybookExecution, TriggerRule
from tests.helpers import make_prediction

pytestmark = pytest.mark.django_db
EXAMPLE = (
    json.loads(Path("/work/shared/contract/examples/trigger_simple.json").read_text())
    if Path("/work/shared/contract/examples/trigger_simple.json").exists()
    else {
        "interventionId": 101,
        "status": "triggered",
        "estimatedCompletion": "2026-11-25T21:50:10.223Z",
        "responseTime": 65.7,
        "playbookType": "Payment Recovery",
        "aiRecommendation": {"recommendedType": "x", "priority": "high", "estimatedSuccess": 0.75, "reasoning": "r"},
    }
)


@pytest.fixture
def defaults(db):
    call_command("playbooks_import", "--defaults", verbosity=0)
    return {p.name: p for p in Playbook.objects.all()}


def test_trigger_answers_the_contract_shape(defaults, csm, make_customer, api_for, django_capture_on_commit_callbacks):
    customer = make_customer(owner=csm, churn_risk="0.8500")
    make_prediction(
        customer, causes=[{"cause": "Payment problems", "factor": "Failed payments", "impact": 0.4, "value": "2"}]
    )
    playbook = defaults["Payment Recovery"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(csm).post(
            "/api/v1/playbooks/trigger", {"customerId": customer.pk, "playbookId": playbook.pk}, format="json"
        )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(EXAMPLE) <= set(body) and "executionId" in body
    assert body["status"] == "triggered" and body["playbookType"] == "Payment Recovery"
    assert isinstance(body["responseTime"], float) and body["estimatedCompletion"].endswith("Z")
    assert set(body["aiRecommendation"]) == set(EXAMPLE["aiRecommendation"])
    assert body["aiRecommendation"]["recommendedType"] == "Payment Recovery"
    execution = PlaybookExecution.objects.get(pk=body["executionId"])
    assert execution.customer_id == customer.pk and execution.intervention_id == body["interventionId"]
    # The playbook's create_intervention step worked on the answered intervention, not a second one.
    assert Intervention.objects.filter(customer=customer).count() == 1
    assert Intervention.objects.get(pk=body["interventionId"]).priority == "high"
    assert execution.result["steps"][0]["output"]["interventionId"] == body["interventionId"]
    # A second trigger while it runs (waiting 3 days) is a conflict.
    again = api_for(csm).post(
        "/api/v1/playbooks/trigger", {"customerId": customer.pk, "playbookId": playbook.pk}, format="json"
    )
    assert again.status_code == 409 and set(again.json()) == {"message", "code", "errors"}


def test_trigger_accepts_the_apps_intervention_body(defaults, csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    body = {"customerId": customer.pk, "type": "Support Escalation", "priority": "high", "notes": "From the app",
            "assignedCsm": "Sam", "description": "Tickets piling up"}  # fmt: skip
    response = api_for(csm).post("/api/v1/playbooks/trigger", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["playbookType"] == "Support Escalation"
    intervention = Intervention.objects.get(pk=response.json()["interventionId"])
    assert (intervention.type, intervention.assigned_csm, intervention.notes) == (
        "Support Escalation",
        "Sam",
        "From the app",
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "customerId"),
        ({"customerId": "abc", "playbookId": 1}, 400, "customerId"),
        ({"customerId": 1, "playbookId": "x"}, 400, "playbookId"),
        ({"customerId": 1}, 400, "playbookId"),
        ({"customerId": 1, "type": "No such playbook"}, 404, None),  # as an unknown playbookId
        ({"customerId": 999999, "playbookId": 1}, 404, None),
        ({"customerId": 1, "playbookId": 999999}, 404, None),
    ],
)
def test_trigger_bad_input(defaults, csm, make_customer, api_for, body, status, field):
    customer = make_customer(owner=csm)
    body = {
        k: (customer.pk if v == 1 and k == "customerId" else defaults["Payment Recovery"].pk if v == 1 else v)
        for k, v in body.items()
    }
    response = api_for(csm).post("/api/v1/playbooks/trigger", body, format="json")
    assert response.status_code == status, response.content
    payload = response.json()
    assert set(payload) == {"message", "code", "errors"}
    if field:
        assert field in payload["errors"]
    assert not PlaybookExecution.objects.exists()


def test_trigger_permissions(defaults, csm, other_csm, viewer, make_customer, api_for):
    theirs = make_customer(owner=other_csm)
    pb = defaults["Renewal Reminder"].pk
    assert (
        api_for(viewer)
        .post("/api/v1/playbooks/trigger", {"customerId": theirs.pk, "playbookId": pb}, format="json")
        .status_code
        == 403
    )
    assert (
        api_for(csm)
        .post("/api/v1/playbooks/trigger", {"customerId": theirs.pk, "playbookId": pb}, format="json")
        .status_code
        == 404
    )
    assert not PlaybookExecution.objects.exists()


def test_trigger_query_count(defaults, csm, make_customer, api_for, django_assert_max_num_queries):
    customer = make_customer(owner=csm)
    make_prediction(customer)
    with django_assert_max_num_queries(40):
        response = api_for(csm).post(
            "/api/v1/playbooks/trigger",
            {"customerId": customer.pk, "playbookId": defaults["Renewal Reminder"].pk},
            format="json",
        )
    assert response.status_code == 200


def test_invalid_definitions_name_the_step_and_field(csm, api_for):
    steps = [
        {"type": "create_alert", "title": "ok", "message": "ok"},
        {"type": "webhook", "url": "http://example.com/hook"},
        {"type": "wait"},
        {"type": "update_customer", "fields": {"churn_risk": "0"}},
        {"type": "condition", "if": {"field": "nope", "op": "eq", "value": 1}, "then": "s0"},
        {"type": "teleport"},
    ]
    response = api_for(csm).post("/api/playbooks/validate", {"steps": steps}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]["steps"]
    assert set(errors) == {"1", "2", "3", "4", "5"}
    assert "https" in errors["1"]["url"][0]
    assert "duration" in errors["2"]
    assert "churn_risk" in errors["3"]["fields"][0]
    assert "field" in errors["4"]["if"]
    assert "type" in errors["5"]
    assert response.json()["message"].startswith("steps.1.url")
    # Backward jumps are rejected (flow is forward only, so a step runs at most once).
    back = [
        {"key": "a", "type": "create_alert", "title": "t", "message": "m"},
        {"key": "b", "type": "condition", "if": {"field": "health", "op": "lt", "value": 5}, "then": "a"},
    ]
    response = api_for(csm).post("/api/playbooks/validate", {"steps": back}, format="json")
    assert response.status_code == 400 and "later step" in response.json()["errors"]["steps"]["1"]["then"][0]
    ok = api_for(csm).post("/api/playbooks/validate", {"steps": steps[:1]}, format="json")
    assert ok.status_code == 200 and ok.json()["steps"][0]["key"] == "s0"


def test_export_import_round_trip(defaults, tmp_path):
    target = tmp_path / "playbooks.json"
    call_command("playbooks_export", "-o", str(target))
    exported = json.loads(target.read_text())
    assert [d["name"] for d in exported] == sorted(d["name"] for d in DEFAULT_PLAYBOOKS)
    Playbook.objects.filter(name="Renewal Reminder").update(holdout_share=0.5)
    call_command("playbooks_import", str(target), verbosity=0)
    assert Playbook.objects.get(name="Renewal Reminder").holdout_share == 0.0
    assert TriggerRule.objects.filter(playbook__name="Payment Recovery").count() == 2
    broken = [dict(exported[0], steps=[{"type": "wait"}])]
    target.write_text(json.dumps(broken))
    with pytest.raises(Exception, match="steps"):
        call_command("playbooks_import", str(target), verbosity=0)


def test_dry_run_writes_nothing(defaults, csm, make_customer, api_for):
    from tests.test_permissions import _snapshot

    customer = make_customer(owner=csm, churn_risk="0.9000", support_tickets=5)
    make_prediction(customer, probability="0.6000", days_ago=2)  # the cause is new against this one
    make_prediction(
        customer,
        probability="0.9000",
        causes=[{"cause": "Support issues", "factor": "Tickets", "impact": 0.5, "value": "5"}],
    )
    before = _snapshot()
    response = api_for(csm).post(
        "/api/playbooks/dry-run", {"playbookId": defaults["Support Escalation"].pk}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["wouldEnrol"] == 1 and body["customers"][0]["customerId"] == customer.pk
    assert body["customers"][0]["reasons"] == ["Cause Appears"]
    kinds = [s["type"] for s in body["customers"][0]["steps"]]
    assert kinds == ["create_intervention", "notify", "wait", "condition", "create_alert"]
    assert _snapshot() == before


def test_bulk_trigger_and_execution_endpoints(defaults, csm, other_csm, make_customer, api_for):
    mine = [make_customer(owner=csm) for _ in range(3)]
    theirs = make_customer(owner=other_csm)
    pb = defaults["Executive Check-in"].pk
    client = api_for(csm)
    assert (
        client.post(
            "/api/playbooks/bulk-trigger", {"playbookId": pb, "customerIds": [mine[0].pk, theirs.pk]}, format="json"
        ).status_code
        == 404
    )
    response = client.post(
        "/api/playbooks/bulk-trigger", {"playbookId": pb, "customerIds": [c.pk for c in mine]}, format="json"
    )
    assert response.status_code == 200 and response.json()["enrolled"] == 3
    again = client.post("/api/playbooks/bulk-trigger", {"playbookId": pb, "customerIds": [mine[0].pk]}, format="json")
    assert again.json()["enrolled"] == 0 and again.json()["skipped"] == [mine[0].pk]
    listed = client.get("/api/playbook-executions").json()
    assert len(listed) == 3 and {e["status"] for e in listed} == {"running"}
    one = listed[0]["id"]
    assert (
        client.post(f"/api/playbook-executions/{one}/cancel", {"reason": "x"}, format="json").json()["status"]
        == "cancelled"
    )
    assert client.post(f"/api/playbook-executions/{one}/cancel", {}, format="json").status_code == 409


def test_the_admin_dry_run_says_what_each_customer_would_get(defaults, manager, make_customer, client):
    """Each row names the steps in words, or says that the playbook would end at once."""
    playbook = defaults["Support Escalation"]  # exits once the customer has no open ticket
    acting = make_customer(churn_risk="0.9000", support_tickets=5)
    settled = make_customer(churn_risk="0.9000", support_tickets=0)
    for customer in (acting, settled):
        make_prediction(customer, probability="0.6000", days_ago=2)
        make_prediction(
            customer,
            probability="0.9000",
            causes=[{"cause": "Support issues", "factor": "Tickets", "impact": 0.5, "value": "5"}],
        )
    client.force_login(manager)
    html = client.get(f"/admin/playbooks/playbook/{playbook.pk}/dry-run/").content.decode()
    plans = {plan.customer_id: plan for plan in selectors.dry_run(user=manager, playbook=playbook).customers}
    assert set(plans) == {acting.pk, settled.pk}
    assert plans[acting.pk].steps and not plans[settled.pk].steps
    assert escape("; ".join(step.would_do for step in plans[acting.pk].steps)) in html
    assert html.count("none: an exit condition already holds") == 1


def test_admin_pages(defaults, admin_user, make_customer, client):
    client.force_login(admin_user)
    playbook = defaults["Executive Check-in"]
    customer = make_customer()
    change = client.get(f"/admin/playbooks/playbook/{playbook.pk}/change/")
    assert change.status_code == 200 and b"Dry run" in change.content
    assert client.get(f"/admin/playbooks/playbook/{playbook.pk}/dry-run/").status_code == 200
    assert b"By playbook" in client.get("/admin/playbooks/playbook/report/").content
    response = client.post(f"/admin/playbooks/playbook/{playbook.pk}/trigger/", {"customer_ids": str(customer.pk)})
    assert b"Enrolled 1 of 1" in response.content
    execution = PlaybookExecution.objects.get(customer=customer)
    client.post(
        "/admin/playbooks/playbookexecution/",
        {"action": "cancel_executions", "_selected_action": [execution.pk]},
    )
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    # The admin's step editor rejects an invalid definition on the step and field it names.
    response = client.post(
        f"/admin/playbooks/playbook/{playbook.pk}/change/",
        {"name": playbook.name, "exit-TOTAL_FORMS": "0", "exit-INITIAL_FORMS": "0", "holdout_share": "0",
         "reenrol_days": "30", "rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0",
         "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0", "steps-0-type": "wait", "steps-0-ORDER": "1"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.context["adminform"].form.steps_formset.forms[0].errors == {
        "duration": ["give either duration or until (with timeout)"]
    }
