"""Real responses in the states a fuzzer rarely reaches (a running execution, a cancelled one,
conflicts) conform to the OpenAPI document: the status is documented for the operation and the
body matches its schema, checked by schemathesis' own response validation.

The live test (tests/live/test_schemathesis.py) fuzzes every operation through uvicorn."""

import datetime as dt
import json

import pytest
import requests
import schemathesis
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from schemathesis.core.transport import Response

from alerts.models import Alert
from core.api.schema_hooks import CONFLICTS
from integrations.models import Integration
from playbooks.models import PlaybookExecution
from playbooks.services import playbook_upsert
from tests.helpers import make_alert

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def document() -> dict:
    # Rendered and parsed as served, so the document is what a client sees.
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


def conforms(document: dict, template: str, method: str, response, path: str) -> dict:
    """Check one Django test response against the document; return its JSON body."""
    documented = document["paths"][template][method.lower()]["responses"]
    assert str(response.status_code) in documented, (template, response.status_code, sorted(documented))
    operation = schemathesis.openapi.from_dict(document)[template][method.upper()]
    wire = Response(
        status_code=response.status_code,
        headers={name: [value] for name, value in response.headers.items()},
        content=response.content,
        request=requests.Request(method.upper(), f"http://testserver{path}").prepare(),
        elapsed=0.0,
        verify=True,
    )
    operation.validate_response(wire)  # raises with every mismatch
    return response.json()


@pytest.fixture
def playbook(settings):
    return playbook_upsert(
        name="Save the account", data={"steps": [{"key": "pause", "type": "wait", "duration": "7d"}]}
    )[0]


def test_an_execution_through_its_states_conforms(document, admin_user, make_customer, api_for, playbook):
    customer = make_customer(owner=admin_user)
    client = api_for(admin_user)
    trigger = {"customerId": customer.pk, "playbookId": playbook.pk}

    started = conforms(
        document, "/api/v1/playbooks/trigger", "post", client.post("/api/v1/playbooks/trigger", trigger), ""
    )
    execution_id = started["executionId"]
    assert PlaybookExecution.objects.get(pk=execution_id).status == "running"
    again = client.post("/api/v1/playbooks/trigger", trigger)
    assert again.status_code == 409
    conforms(document, "/api/v1/playbooks/trigger", "post", again, "/api/v1/playbooks/trigger")

    path = f"/api/playbook-executions/{execution_id}"
    running = conforms(document, "/api/playbook-executions/{id}", "get", client.get(path), path)
    assert (running["status"], running["completedAt"]) == ("running", None)
    retry = client.post(f"{path}/retry")
    assert retry.status_code == 409
    conforms(document, "/api/playbook-executions/{id}/retry", "post", retry, f"{path}/retry")

    cancelled = conforms(
        document,
        "/api/playbook-executions/{id}/cancel",
        "post",
        client.post(f"{path}/cancel", {"reason": "spoke to them"}),
        f"{path}/cancel",
    )
    assert (cancelled["status"], cancelled["nextRunAt"]) == ("cancelled", None)
    assert cancelled["completedAt"] is not None
    twice = client.post(f"{path}/cancel", {"reason": "again"})
    assert twice.status_code == 409
    assert twice.json()["code"] == "conflict"
    conforms(document, "/api/playbook-executions/{id}/cancel", "post", twice, f"{path}/cancel")
    listed = conforms(document, "/api/playbook-executions", "get", client.get("/api/playbook-executions"), "")
    assert [(e["id"], e["status"], e["nextRunAt"]) for e in listed] == [(execution_id, "cancelled", None)]


def test_a_sync_of_a_push_only_integration_is_a_documented_409(document, admin_user, api_for):
    segment = Integration.objects.create(name="Segment", type="analytics", config={"provider": "segment"})
    path = f"/api/integrations/{segment.pk}/sync"
    response = api_for(admin_user).post(path)
    assert response.status_code == 409
    conforms(document, "/api/integrations/{id}/sync", "post", response, path)
    assert segment.sync_runs.count() == 0


def test_acting_on_a_resolved_alert_is_a_documented_409(document, admin_user, make_customer, api_for):
    alert = make_alert(make_customer(owner=admin_user), status=Alert.Status.RESOLVED)
    client = api_for(admin_user)
    for action, body in (
        ("acknowledge", {}),
        ("snooze", {"until": (timezone.now() + dt.timedelta(days=1)).isoformat()}),
    ):
        path = f"/api/alerts/{alert.pk}/{action}"
        response = client.post(path, body, format="json")
        assert response.status_code == 409, action
        conforms(document, f"/api/alerts/{{id}}/{action}", "post", response, path)
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_at, alert.snoozed_until) == ("resolved", None, None)


def test_every_documented_conflict_names_an_operation(document):
    assert [key for key in CONFLICTS if key[1] not in document["paths"].get(key[0], {})] == []
    assert {key for key, op in _operations(document) if "409" in op["responses"]} == set(CONFLICTS)


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield (path, method), operation
