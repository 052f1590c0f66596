"""Permission matrix generated from the OpenAPI schema (RELIABILITY S1–S2).

Every operation in the schema must be classified below, so a new endpoint fails this file until
someone decides who may call it.
"""

import json
import re

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from core.auth.tokens import issue_tokens
from customers.models import Customer
from integrations.tests.receiver import post
from tests.helpers import make_alert, make_intervention, make_prediction, schema_operations

# (method, path) -> "public" | "read" | "write" | "manage" (managers and admins) | "signed" (see below)
OPERATIONS = {
    ("POST", "/api/auth/login"): "public",
    ("POST", "/api/auth/refresh"): "public",
    ("POST", "/api/auth/logout"): "public",
    ("GET", "/api/customers"): "read",
    ("GET", "/api/customers/{id}"): "read",
    ("GET", "/api/customers/{id}/sessions"): "read",
    ("GET", "/api/customers/{id}/timeline"): "read",
    ("GET", "/api/interventions"): "read",
    ("POST", "/api/interventions"): "write",
    ("GET", "/api/interventions/{id}"): "read",
    ("PATCH", "/api/interventions/{id}"): "write",
    ("POST", "/api/interventions/bulk"): "write",
    ("POST", "/api/interventions/bulk-apply"): "write",
    ("GET", "/api/interventions/analytics"): "read",
    ("GET", "/api/integrations"): "read",
    ("GET", "/api/alerts"): "read",
    ("PATCH", "/api/alerts/{id}/read"): "write",
    # Notifications: acknowledge/snooze an alert in scope; one's own preferences.
    ("POST", "/api/alerts/{id}/acknowledge"): "write",
    ("POST", "/api/alerts/{id}/snooze"): "write",
    ("GET", "/api/notifications/preferences"): "read",
    ("PUT", "/api/notifications/preferences"): "write",
    ("GET", "/api/dashboard/metrics"): "read",
    ("GET", "/api/dashboard/chart-data"): "read",
    ("GET", "/api/churn-causes"): "read",
    ("POST", "/api/import/customers/csv"): "write",
    # Computations every role may ask for. Predict answers a viewer with the stored prediction;
    # only a role that may write stores a new one, and only when the customer's inputs changed.
    ("POST", "/api/v1/churn/predict"): "read",
    ("GET", "/api/v1/causes/explain"): "read",
    ("POST", "/api/v1/causes/explain"): "read",
    ("POST", "/api/ml/batch-predict"): "read",
    ("GET", "/api/ml/feature-importance"): "read",
    ("GET", "/api/ml/analytics"): "read",
    ("GET", "/model/metrics/latest"): "read",
    ("POST", "/api/ml/recommend-intervention"): "read",
    ("POST", "/api/ml/update-outcome"): "write",
    # Playbooks. Definitions change in the admin or by import; validate and dry run write nothing.
    ("POST", "/api/v1/playbooks/trigger"): "write",
    ("GET", "/api/playbooks"): "read",
    ("POST", "/api/playbooks/bulk-trigger"): "write",
    ("POST", "/api/playbooks/validate"): "read",
    ("POST", "/api/playbooks/dry-run"): "read",
    ("GET", "/api/playbooks/analytics"): "read",
    ("GET", "/api/playbook-executions"): "read",
    ("GET", "/api/playbook-executions/{id}"): "read",
    ("POST", "/api/playbook-executions/{id}/cancel"): "write",
    ("POST", "/api/playbook-executions/{id}/retry"): "write",
    # The review queue: a CSM reads and decides their own customers' e-mails; managers every one.
    ("GET", "/api/playbook-email-reviews"): "read",
    ("GET", "/api/playbook-email-reviews/{id}"): "read",
    ("POST", "/api/playbook-email-reviews/{id}/approve"): "write",
    ("POST", "/api/playbook-email-reviews/{id}/discard"): "write",
    # Live alert feed: a ticket for the caller's own WebSocket (every role, viewers included).
    ("POST", "/api/alerts/ws-ticket"): "read",
    # Integrations. "manage": book-wide configuration, managers and admins only.
    ("POST", "/api/integrations/{id}/sync"): "manage",
    # History imports: book-wide uploads naming every portfolio's customers.
    ("POST", "/api/imports"): "manage",
    ("GET", "/api/imports/{id}"): "manage",
    ("GET", "/api/imports/{id}/errors.csv"): "manage",
    # "signed": no JWT (providers cannot hold our tokens); authenticated by the provider's
    # signature over the raw body instead. Unsigned or badly signed → 401 and nothing written.
    ("POST", "/api/webhooks/{provider}/{integration_id}"): "signed",
}
# Operations that name a customer or intervention in the body (the CSV import's cross-portfolio
# rule is a row error, tested in test_csv_import).
BODY_REFERENCES = {
    ("POST", "/api/interventions"),
    ("POST", "/api/interventions/bulk"),
    ("POST", "/api/interventions/bulk-apply"),
    ("POST", "/api/v1/churn/predict"),
    ("POST", "/api/v1/causes/explain"),
    ("POST", "/api/ml/batch-predict"),
    ("POST", "/api/ml/recommend-intervention"),
    ("POST", "/api/ml/update-outcome"),
    ("POST", "/api/v1/playbooks/trigger"),
    ("POST", "/api/playbooks/bulk-trigger"),
}
# Routes served outside the schema on purpose.
NOT_IN_SCHEMA = {"/api/docs", "/api/schema", "/api/.*"}  # .* : the JSON 404 for unmatched /api/ URLs
SECRETS = re.compile(r"password|secret|token|hash|api_?key|signing|private", re.IGNORECASE)


@pytest.mark.django_db
def test_schema_and_docs_need_sign_in(csm, api_for):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/schema").status_code == 401
    docs = APIClient().get("/api/docs")
    assert docs.status_code == 302 and docs["Location"] == "/signin?next=/api/docs"
    assert api_for(csm).get("/api/schema").status_code == 200
    assert api_for(csm).get("/api/docs").status_code == 200


def test_every_schema_operation_is_classified():
    operations = set(schema_operations())
    assert operations - set(OPERATIONS) == set(), "classify new operations in OPERATIONS"
    assert set(OPERATIONS) - operations == set(), "OPERATIONS lists operations the API no longer has"


def _walk(patterns, prefix=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def test_every_api_route_is_in_the_schema():
    paths = {path for _, path in schema_operations()}
    routes = set()
    for route in _walk(get_resolver().url_patterns):
        if not route.startswith("api/"):
            continue
        normalised = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route).replace("^", "").replace("$", "")
        normalised = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", normalised).replace("{pk}", "{id}")
        routes.add(normalised)
    assert routes - paths - NOT_IN_SCHEMA == set()


@pytest.fixture
def world(csm, other_csm, make_customer):
    """One customer (with an intervention and an alert) in each of two CSMs' portfolios."""
    mine, theirs = make_customer(owner=csm), make_customer(owner=other_csm)
    objects = {}
    for label, customer in (("mine", mine), ("theirs", theirs)):
        objects[label] = {
            "customer": customer,
            "intervention": make_intervention(customer),
            "alert": make_alert(customer),
        }
        make_prediction(customer)
        objects[label].update(_playbook_objects(customer))
    from predictions.services.registry import model_promote, rules_version

    model_promote(rules_version(), "test world")
    return objects


def _playbook_objects(customer) -> dict:
    """Playbooks: a playbook shared by both portfolios, a running and a failed execution."""
    from django.utils import timezone

    from playbooks.models import EmailReview, Playbook, PlaybookExecution

    playbook, _ = Playbook.objects.get_or_create(
        name="Matrix playbook", defaults={"steps": [{"key": "a", "type": "create_alert", "title": "t", "message": "m"}]}
    )
    waiting, _ = Playbook.objects.get_or_create(
        name="Matrix wait", defaults={"steps": [{"key": "w", "type": "wait", "duration": "1d"}]}
    )
    mailer, _ = Playbook.objects.get_or_create(
        name="Matrix mailer",
        defaults={"steps": [{"key": "m", "type": "send_email", "to": "customer", "subject": "s", "body": "b"}]},
    )
    now = timezone.now()
    running = PlaybookExecution.objects.create(
        playbook=waiting, customer=customer, started_at=now, current_step="w", next_run_at=now
    )
    failed = PlaybookExecution.objects.create(
        playbook=playbook, customer=customer, started_at=now, status="failed", current_step="a", error="x"
    )
    parked = PlaybookExecution.objects.create(playbook=mailer, customer=customer, started_at=now, current_step="m")
    review = EmailReview.objects.create(
        execution=parked, step_key="m", playbook=mailer, customer=customer, to=customer.email, subject="s", body="b"
    )
    return {
        "playbook": playbook,
        "running_execution": running,
        "failed_execution": failed,
        "parked_execution": parked,  # waiting at its e-mail step for the review below
        "email_review": review,
    }


def _path(path: str, objects: dict) -> str:
    if path.endswith("/retry"):
        return path.replace("{id}", str(objects["failed_execution"].pk))
    if "/playbook-email-reviews/{id}" in path:
        return path.replace("{id}", str(objects["email_review"].pk))
    if "/playbook-executions/{id}" in path:
        return path.replace("{id}", str(objects["running_execution"].pk))
    if "/interventions/{id}" in path:
        return path.replace("{id}", str(objects["intervention"].pk))
    if "/alerts/{id}" in path:
        return path.replace("{id}", str(objects["alert"].pk))
    return path.replace("{id}", str(objects["customer"].pk))


def _body(method: str, path: str, objects: dict) -> dict:
    customer, intervention = objects["customer"], objects["intervention"]
    return {
        "/api/interventions": {"customerId": customer.pk, "type": "Executive Check-in"},
        "/api/interventions/{id}": {"status": "completed", "notes": "x"},
        "/api/interventions/bulk": {"taskIds": [str(intervention.pk)], "action": "escalate"},
        "/api/interventions/bulk-apply": {"userIds": [customer.pk], "interventionType": "call"},
        "/api/import/customers/csv": {"csv": f"name,email\nNew,{customer.email}\n"},
        "/api/v1/churn/predict": {"customerId": customer.pk},
        "/api/v1/causes/explain": {"customerId": customer.pk} if method == "POST" else {},
        "/api/ml/batch-predict": {"customerIds": [customer.pk]},
        "/api/ml/recommend-intervention": {"customerId": customer.pk},
        "/api/ml/update-outcome": {"customerId": customer.pk, "intervention": "Executive Check-in", "success": True},
        "/api/alerts/{id}/snooze": {"minutes": 60},
        "/api/notifications/preferences": {"minSeverity": "high", "quietHoursStart": "22:00", "quietHoursEnd": "07:00"},
        "/api/v1/playbooks/trigger": {"customerId": customer.pk, "playbookId": objects["playbook"].pk},
        "/api/playbooks/bulk-trigger": {"playbookId": objects["playbook"].pk, "customerIds": [customer.pk]},
        "/api/playbooks/validate": {"steps": [{"type": "create_alert", "title": "t", "message": "m"}]},
        "/api/playbooks/dry-run": {"playbookId": objects["playbook"].pk, "customerIds": [customer.pk]},
    }.get(path, {})


def _snapshot() -> dict:
    """Row counts and content of every domain table: proof that nothing was written."""
    state = {}
    for label in ("customers", "interventions", "alerts", "playbooks", "predictions", "integrations"):
        for model in apps.get_app_config(label).get_models():
            state[model._meta.db_table] = sorted(
                map(str, model.objects.values_list(*[f.attname for f in model._meta.concrete_fields]))
            )
    return state


def _call(client, method: str, url: str, body: dict):
    return getattr(client, method.lower())(url, body, format="json") if method != "GET" else client.get(url)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"), [op for op, kind in OPERATIONS.items() if kind not in ("public", "signed")]
)
def test_anonymous_gets_401_everywhere(world, method, path):
    from rest_framework.test import APIClient

    before = _snapshot()
    response = _call(APIClient(), method, _path(path, world["mine"]), _body(method, path, world["mine"]))
    assert response.status_code == 401, response.content
    assert set(response.json()) == {"message", "code", "errors"}
    assert _snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [op for op, kind in OPERATIONS.items() if kind == "write"])
def test_viewer_gets_403_on_every_write_and_nothing_is_written(world, viewer, api_for, method, path):
    before = _snapshot()
    response = _call(api_for(viewer), method, _path(path, world["mine"]), _body(method, path, world["mine"]))
    assert response.status_code == 403, response.content
    assert _snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [op for op, kind in OPERATIONS.items() if kind == "read"])
def test_viewer_and_manager_can_read_everything(world, viewer, manager, api_for, method, path):
    for user in (viewer, manager):
        body = _body(method, path, world["theirs"])
        assert _call(api_for(user), method, _path(path, world["theirs"]), body).status_code == 200, path


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [op for op, kind in OPERATIONS.items() if kind == "read"])
def test_a_viewer_reading_writes_nothing(world, viewer, api_for, method, path):
    before = _snapshot()
    response = _call(api_for(viewer), method, _path(path, world["mine"]), _body(method, path, world["mine"]))
    assert response.status_code == 200, (path, response.content)
    assert _snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [op for op, kind in OPERATIONS.items() if kind in ("read", "write") and ("{id}" in op[1] or op in BODY_REFERENCES)],
)
def test_csm_reaching_another_portfolio_gets_404_and_nothing_written(world, csm, api_for, method, path):
    before = _snapshot()
    response = _call(api_for(csm), method, _path(path, world["theirs"]), _body(method, path, world["theirs"]))
    assert response.status_code == 404, (path, response.content)
    assert _snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [op for op, kind in OPERATIONS.items() if kind == "write"])
def test_csm_can_write_in_own_portfolio(world, csm, api_for, method, path):
    response = _call(api_for(csm), method, _path(path, world["mine"]), _body(method, path, world["mine"]))
    assert response.status_code in (200, 201), response.content


@pytest.mark.django_db
def test_csm_lists_contain_none_of_another_portfolio(world, csm, api_for):
    client = api_for(csm)
    mine, theirs = world["mine"], world["theirs"]
    assert [c["id"] for c in client.get("/api/customers").json()] == [mine["customer"].pk]
    assert [i["id"] for i in client.get("/api/interventions").json()] == [mine["intervention"].pk]
    assert [a["id"] for a in client.get("/api/alerts").json()] == [mine["alert"].pk]
    assert client.get(f"/api/interventions?customerId={theirs['customer'].pk}").json() == []


@pytest.mark.django_db
def test_dashboards_count_only_the_portfolio(world, csm, manager, api_for, make_customer):
    make_customer(owner=world["theirs"]["customer"].owner, churn_risk="0.9500")
    csm_metrics = api_for(csm).get("/api/dashboard/metrics").json()
    manager_metrics = api_for(manager).get("/api/dashboard/metrics").json()
    assert csm_metrics["customersAtRisk"] == 0
    assert manager_metrics["customersAtRisk"] == 1
    assert csm_metrics["activeInterventions"] == 1
    assert manager_metrics["activeInterventions"] == 2
    analytics = api_for(csm).get("/api/interventions/analytics").json()
    assert analytics["overall_metrics"]["total_interventions"] == 1
    causes = {row["cause"]: row["count"] for row in api_for(csm).get("/api/churn-causes").json()}
    assert causes == {}  # the table is empty until the batch refreshes it


@pytest.mark.django_db
def test_protected_fields_cannot_be_written(world, csm, api_for):
    """Mass assignment (S2): ids, owner, risk, timestamps and role flags are ignored."""
    mine = world["mine"]
    hostile = {
        "id": 999,
        "customerId": world["theirs"]["customer"].pk,
        "customer": world["theirs"]["customer"].pk,
        "createdAt": "2000-01-01T00:00:00Z",
        "created_at": "2000-01-01T00:00:00Z",
        "owner": 1,
        "ownerId": 1,
        "is_staff": True,
        "is_superuser": True,
        "churn_score": 1,
        "churnRisk": "99.00",
        "signing_secret": "x",
        "notes": "allowed",
    }
    intervention = mine["intervention"]
    created_at = intervention.created_at
    response = api_for(csm).patch(f"/api/interventions/{intervention.pk}", hostile, format="json")
    assert response.status_code == 200
    intervention.refresh_from_db()
    assert (intervention.pk, intervention.customer_id, intervention.created_at, intervention.notes) == (
        mine["intervention"].pk,
        mine["customer"].pk,
        created_at,
        "allowed",
    )
    csm.refresh_from_db()
    assert not csm.is_superuser
    customer = Customer.objects.get(pk=mine["customer"].pk)
    assert customer.owner_id == csm.pk and customer.churn_risk == mine["customer"].churn_risk


@pytest.mark.django_db
def test_no_get_response_exposes_secret_looking_keys(world, admin_user, api_for):
    from integrations.models import Integration

    Integration.objects.create(name="HubSpot", type="crm", config={"private_app_token": "pat-1", "portal": 5})
    client = api_for(admin_user)

    def keys(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                yield key
                yield from keys(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from keys(inner)

    for (method, path), kind in OPERATIONS.items():
        if method != "GET" or kind == "public":
            continue
        body = client.get(_path(path, world["mine"])).json()
        leaked = [key for key in keys(body) if SECRETS.search(str(key))]
        assert leaked == [], (path, leaked)


@pytest.mark.django_db
def test_strongest_role_wins_and_no_role_reaches_nothing(make_user, make_customer, api_for):
    from django.contrib.auth.models import Group

    both = make_user("viewer")
    both.groups.add(Group.objects.get(name="manager"))
    customer = make_customer()
    response = api_for(both).post("/api/interventions", {"customerId": customer.pk, "type": "Call"}, format="json")
    assert response.status_code == 201  # manager beats viewer

    nobody = make_user(None)
    assert api_for(nobody).get("/api/customers").status_code == 403


@pytest.fixture
def integration(db):
    from integrations.models import Integration

    return Integration.objects.create(
        name="Stripe", type="payment", config={"provider": "stripe", "api_key": "sk_1", "signing_secret": "whsec_1"}
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [op for op, kind in OPERATIONS.items() if kind == "manage"])
def test_manage_operations_are_for_managers_and_admins(world, integration, viewer, csm, manager, api_for, method, path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from customers.models import ImportJob

    url, body, fmt = path.replace("{id}", str(integration.pk)), dict, "json"
    if path.startswith("/api/imports"):
        job = ImportJob.objects.create(files=[{"name": "customers.csv", "kind": "customers", "size": 10}])
        url = path.replace("{id}", str(job.pk))
        if method == "POST":
            fmt = "multipart"

            def body() -> dict:  # an upload is read once: a fresh one per request
                return {"files": [SimpleUploadedFile("customers.csv", b"name,email\n")], "dryRun": "true"}

    before = _snapshot()
    for user in (viewer, csm):
        response = getattr(api_for(user), method.lower())(url, body(), format=fmt)
        assert response.status_code == 403, response.content
    assert _snapshot() == before
    response = getattr(api_for(manager), method.lower())(url, body(), format=fmt)
    assert response.status_code in (200, 201, 202), response.content


# The webhook receiver is answered before Django (churnshield/asgi.py): called over ASGI, and on
# committed rows, since it reads and writes on its own threads.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path"), [op for op, kind in OPERATIONS.items() if kind == "signed"])
def test_signed_operations_refuse_unsigned_requests_even_with_a_jwt(world, integration, admin_user, method, path):
    url = path.replace("{provider}", "stripe").replace("{integration_id}", str(integration.pk))
    body = json.dumps({"id": "evt_1", "type": "customer.created"}).encode()
    before = _snapshot()
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {issue_tokens(admin_user)['access']}"}):
        response = post(url, body, headers, method=method)
        assert response.status_code == 401, response.content
        assert set(response.json()) == {"message", "code", "errors"}
    assert _snapshot() == before


HOSTILE = {
    "id": 999999,
    "pk": 999999,
    "owner": "{other}",
    "ownerId": "{other}",
    "owner_id": "{other}",
    "is_staff": False,
    "is_superuser": True,
    "isSuperuser": True,
    "role": "admin",
    "createdAt": "2000-01-01T00:00:00Z",
    "created_at": "2000-01-01T00:00:00Z",
    "churnRisk": "99.00",
    "churn_risk": "99.00",
    "churn_score": 1,
    "healthScore": 0,
    "signing_secret": "whsec_hostile",
    "config": {"signing_secret": "whsec_hostile"},
}


def _protected_state() -> dict:
    """The fields no API write may set: role flags, ownership, scores, integration secrets."""
    from django.contrib.auth import get_user_model

    from integrations.models import Integration

    return {
        "users": sorted(get_user_model().objects.values_list("pk", "is_staff", "is_superuser", "username")),
        "groups": sorted(get_user_model().groups.through.objects.values_list("user_id", "group_id")),
        "customers": sorted(Customer.objects.values_list("pk", "owner_id", "churn_risk", "health_score")),
        "integrations": sorted((pk, str(config)) for pk, config in Integration.objects.values_list("pk", "config")),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [op for op, kind in OPERATIONS.items() if kind in ("write", "manage")])
def test_mass_assignment_changes_no_protected_field(world, integration, csm, manager, api_for, method, path):
    """S2 for every writable operation: the endpoint's own body plus every protected field name
    with hostile values; the protected fields are unchanged and no row takes the hostile id/date."""
    from django.apps import apps as django_apps

    user = manager if OPERATIONS[(method, path)] == "manage" else csm
    url = path.replace("{id}", str(integration.pk)) if "integrations" in path else _path(path, world["mine"])
    other = world["theirs"]["customer"].owner_id
    hostile = {key: (other if value == "{other}" else value) for key, value in HOSTILE.items()}
    body = {**hostile, **_body(method, path, world["mine"])}
    before = _protected_state()
    response = _call(api_for(user), method, url, body)
    assert response.status_code < 500, response.content
    after = _protected_state()
    new_customers = set(after.pop("customers")) - set(before.pop("customers"))
    assert after == before, path
    assert all(owner == user.pk or owner is None for _, owner, _, _ in new_customers), new_customers
    for label in ("customers", "interventions", "alerts", "playbooks", "predictions", "integrations"):
        for model in django_apps.get_app_config(label).get_models():
            assert not model.objects.filter(pk=999999).exists(), model
            for field in model._meta.concrete_fields:
                if field.get_internal_type() == "DateTimeField":
                    assert not model.objects.filter(**{f"{field.attname}__year": 2000}).exists(), (model, field)


# S1: what a list's items are, so "0 of another portfolio's ids" can be checked for every list.
LIST_ITEMS = {
    "/api/customers": ("customer",),
    "/api/interventions": ("intervention",),
    "/api/alerts": ("alert",),
    "/api/playbook-executions": ("running_execution", "failed_execution", "parked_execution"),
    "/api/playbook-email-reviews": ("email_review",),
}
# Lists that are the same for every role by design (book-wide configuration, or aggregates of the
# caller's own portfolio with no object ids in them).
SHARED_LISTS = {"/api/integrations", "/api/playbooks", "/api/churn-causes"}
CUSTOMER_KEYS = {"customerId", "customer_id", "userId", "user_id"}


def _id_values(value, keys: set[str]):
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in keys and isinstance(inner, int | str):
                yield str(inner)
            yield from _id_values(inner, keys)
    elif isinstance(value, list):
        for inner in value:
            yield from _id_values(inner, keys)


@pytest.mark.django_db
def test_every_list_endpoint_is_classified_and_csm_lists_hold_none_of_another_portfolio(world, csm, api_for):
    client = api_for(csm)
    mine, theirs = world["mine"], world["theirs"]
    lists = set()
    for (method, path), kind in OPERATIONS.items():
        if method != "GET" or kind != "read" or "{" in path:
            continue
        body = client.get(path).json()
        if isinstance(body, list):
            lists.add(path)
    assert lists - set(LIST_ITEMS) - SHARED_LISTS == set(), "classify new list endpoints in LIST_ITEMS"
    for path, kinds in LIST_ITEMS.items():
        body = client.get(path).json()
        ids = {str(item["id"]) for item in body}
        assert ids == {str(mine[kind].pk) for kind in kinds}, path
        assert str(theirs["customer"].pk) not in set(_id_values(body, CUSTOMER_KEYS)), path
    # Sub-lists of a customer in scope never carry another customer's id either.
    for sub in ("sessions", "timeline"):
        body = client.get(f"/api/customers/{mine['customer'].pk}/{sub}").json()
        assert str(theirs["customer"].pk) not in set(_id_values(body, CUSTOMER_KEYS)), sub
