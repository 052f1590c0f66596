"""Bad input (RELIABILITY F1/5.2 regressions): a 4xx JSON error naming the field, nothing written."""

import pytest
from django.test import override_settings

from customers.models import Customer
from interventions.models import Intervention
from tests.helpers import make_intervention


def error_fields(response) -> set[str]:
    body = response.json()
    assert set(body) >= {"message", "code", "errors"}, body
    return set(body["errors"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "Call"}, "customerId"),
        ({"customerId": "abc", "type": "Call"}, "customerId"),
        ({"customerId": 2**40, "type": "Call"}, "customerId"),
        ({"customerId": -1, "type": "Call"}, "customerId"),
        ({"customerId": None, "type": "Call"}, "customerId"),
        ({"customerId": "{cid}"}, "type"),
        ({"customerId": "{cid}", "type": "x" * 201}, "type"),
        ({"customerId": "{cid}", "type": "Call", "priority": "urgent"}, "priority"),
        ({"customerId": "{cid}", "type": "Call", "status": "done"}, "status"),
        ({"customerId": "{cid}", "type": "Call", "dueDate": "tomorrow"}, "dueDate"),
        # Found by schemathesis: a year pandas cannot hold made later predictions a 500.
        ({"customerId": "{cid}", "type": "Call", "completedAt": "0528-08-11T13:26:17Z"}, "completedAt"),
        ({"customerId": "{cid}", "type": "Call", "dueDate": "9999-12-31T00:00:00Z"}, "dueDate"),
        ({"customerId": "{cid}", "type": "Call", "notes": "nul\x00byte"}, "notes"),
        ({"customerId": "{cid}", "type": ["Call"]}, "type"),
    ],
)
def test_intervention_create_rejects_bad_fields(csm, make_customer, api_for, body, field):
    customer = make_customer(owner=csm)
    body = {key: (customer.pk if value == "{cid}" else value) for key, value in body.items()}
    response = api_for(csm).post("/api/interventions", body, format="json")
    assert response.status_code == 400
    assert field in error_fields(response)
    assert field in response.json()["message"]
    assert Intervention.objects.count() == 0


@pytest.mark.django_db
def test_unknown_customer_is_404_and_nothing_written(csm, api_for):
    response = api_for(csm).post("/api/interventions", {"customerId": 987654, "type": "Call"}, format="json")
    assert response.status_code == 404
    assert response.json()["message"] == "Customer not found"
    assert Intervention.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"taskIds": [], "action": "complete"}, "taskIds"),
        ({"taskIds": ["x"], "action": "complete"}, "taskIds"),
        ({"taskIds": "1,2", "action": "complete"}, "taskIds"),
        ({"taskIds": ["{iid}"], "action": "delete"}, "action"),
        ({"taskIds": ["{iid}"]}, "action"),
    ],
)
def test_bulk_rejects_bad_fields(csm, make_customer, api_for, body, field):
    intervention = make_intervention(make_customer(owner=csm))
    body = {k: ([intervention.pk] if v == ["{iid}"] else v) for k, v in body.items()}
    response = api_for(csm).post("/api/interventions/bulk", body, format="json")
    assert response.status_code == 400
    assert field in error_fields(response)
    intervention.refresh_from_db()
    assert (intervention.status, intervention.priority) == ("active", "medium")


@pytest.mark.django_db
def test_bulk_with_one_unknown_id_changes_nothing(csm, make_customer, api_for):
    intervention = make_intervention(make_customer(owner=csm))
    response = api_for(csm).post(
        "/api/interventions/bulk", {"taskIds": [intervention.pk, 999999], "action": "complete"}, format="json"
    )
    assert response.status_code == 404
    assert "999999" in response.json()["message"]
    intervention.refresh_from_db()
    assert intervention.status == "active"


@pytest.mark.django_db
def test_patch_rejects_bad_values_and_unknown_ids(csm, make_customer, api_for):
    intervention = make_intervention(make_customer(owner=csm))
    client = api_for(csm)
    bad = client.patch(f"/api/interventions/{intervention.pk}", {"status": 5, "completedAt": "never"}, format="json")
    assert bad.status_code == 400
    assert error_fields(bad) == {"status", "completedAt"}
    assert client.patch("/api/interventions/99999999999999999999", {}, format="json").status_code == 404
    intervention.refresh_from_db()
    assert intervention.status == "active"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2", b'{"customerId": 1e999, "type": "x"}', b"[" * 5000 + b"]" * 5000, b"\xff\xfe\x00"],
)
def test_malformed_json_is_400(csm, api_for, raw):
    response = api_for(csm).generic("POST", "/api/interventions", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in {"parse_error", "invalid"}
    assert Intervention.objects.count() == 0


@pytest.mark.django_db
def test_json_array_body_where_object_expected(csm, api_for):
    response = api_for(csm).post("/api/interventions", [1, 2], format="json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_wrong_content_type_is_415(csm, api_for):
    response = api_for(csm).generic(
        "POST", "/api/interventions", "a=b", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_oversize_body_is_413(csm, api_for):
    response = api_for(csm).post("/api/import/customers/csv", {"csv": "name,email\n" + "x" * 5000}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert Customer.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["search=%00", "plan=a%00b", "ownerId=99999999999999999999", "ownerId=abc", "page=abc", "page=0", "per_page=-5"],
)
def test_hostile_query_params_never_500(manager, api_for, query):
    response = api_for(manager).get(f"/api/customers?{query}")
    assert response.status_code in (200, 400, 404), response.content
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_chart_range_is_validated(manager, api_for):
    response = api_for(manager).get("/api/dashboard/chart-data?range=5y")
    assert response.status_code == 400
    assert error_fields(response) == {"range"}


@pytest.mark.django_db
def test_unknown_fields_are_ignored_not_written(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    response = api_for(csm).post(
        "/api/interventions",
        {"customerId": customer.pk, "type": "Call", "hacker": True, "id": 987654, "createdAt": "2000-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert "hacker" not in body
    assert body["id"] != 987654 and not Intervention.objects.filter(pk=987654).exists()
    assert not body["createdAt"].startswith("2000")


@pytest.mark.django_db
@override_settings(DEBUG=True)  # `make run`: Django would answer its HTML debug page
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/customers/abc"), ("PATCH", "/api/interventions/abc"), ("GET", "/api/nope"), ("POST", "/api/x/y")],
)
def test_unmatched_api_urls_are_json_404_even_in_debug(csm, method, path):
    from rest_framework.test import APIClient

    from core.auth.tokens import issue_tokens

    client = APIClient(enforce_csrf_checks=True)  # as a real server does (Django's CSRF middleware)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_tokens(csm)['access']}")
    response = client.generic(method, path, "{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"message": "Not found.", "code": "not_found", "errors": {}}


# The schema says `integer`, `string`, `boolean`, `number`: a JSON body carrying another type is
# refused (DRF alone would read "12" as 12, 0 as "0" and "true" as True).
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("post", "/api/interventions", {"customerId": "{cid}", "type": "Call", "notes": 0}, "notes"),
        ("post", "/api/interventions", {"customerId": "{cid:str}", "type": "Call"}, "customerId"),
        ("post", "/api/interventions", {"customerId": "{cid}", "type": 7}, "type"),
        ("post", "/api/ml/recommend-intervention", {"customerId": "{cid:str}"}, "customerId"),
        (
            "post",
            "/api/ml/update-outcome",
            {"customerId": "{cid}", "intervention": "Call", "success": "true"},
            "success",
        ),
        (
            "post",
            "/api/ml/update-outcome",
            {"customerId": "{cid}", "intervention": "Call", "success": True, "revenueImpact": "500"},
            "revenueImpact",
        ),
        ("post", "/api/ml/update-outcome", {"customerId": "{cid}", "intervention": 1, "success": True}, "intervention"),
        ("post", "/api/v1/playbooks/trigger", {"customerId": "{cid}", "playbookId": "1"}, "playbookId"),
        ("put", "/api/notifications/preferences", {"digestEnabled": 0}, "digestEnabled"),
        ("put", "/api/notifications/preferences", {"emailEnabled": "false"}, "emailEnabled"),
        ("put", "/api/notifications/preferences", {"timeZone": "Mars/Olympus"}, "timeZone"),
        ("post", "/api/auth/logout", {"refresh": ""}, "refresh"),
        ("post", "/api/auth/logout", {"refresh": 5}, "refresh"),
        ("post", "/api/auth/refresh", {"refresh": ["a"]}, "refresh"),
        ("post", "/api/auth/login", {"username": 5, "password": "x"}, "username"),
    ],
)
def test_json_fields_take_only_their_documented_type(manager, make_customer, api_for, method, url, body, field):
    customer = make_customer(owner=manager)
    placeholders = {"{cid}": customer.pk, "{cid:str}": str(customer.pk)}
    body = {key: placeholders.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    response = getattr(api_for(manager), method)(url, body, format="json")
    assert response.status_code == 400, response.content
    assert error_fields(response) == {field}
    assert Intervention.objects.count() == 0


@pytest.mark.django_db
def test_revenue_impact_is_a_number_kept_to_the_cent(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    opened = make_intervention(customer, type="Call", status="active")
    response = api_for(csm).post(
        "/api/ml/update-outcome",
        {"customerId": customer.pk, "intervention": "Call", "success": True, "revenueImpact": 1200.555},
        format="json",
    )
    assert response.status_code == 200, response.content
    opened.refresh_from_db()
    assert str(opened.revenue_impact) == "1200.56"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("per_page=0", "per_page"),
        ("per_page=-5", "per_page"),
        ("per_page=abc", "per_page"),
        ("per_page=%C2%B2", "per_page"),  # "²" is a digit to str.isdigit, not to int()
        ("page=0", "page"),
        ("page=abc", "page"),
        ("ownerId=1.5", "ownerId"),
        ("minHealth=50.5", "minHealth"),
        ("maxHealth=101", "maxHealth"),
        ("isActive=yes", "isActive"),
        ("isActive=1", "isActive"),
        ("search=" + "x" * 201, "search"),
    ],
)
def test_customer_list_query_parameters_outside_the_schema_are_400(manager, api_for, query, field):
    response = api_for(manager).get(f"/api/customers?{query}")
    assert response.status_code == 400, response.content
    assert error_fields(response) == {field}


@pytest.mark.django_db
def test_per_page_above_the_maximum_is_capped_and_a_page_past_the_end_is_404(manager, make_customer, api_for):
    make_customer(owner=manager)
    client = api_for(manager)
    assert client.get("/api/customers?per_page=99999999999999999999999").status_code == 200
    assert client.get("/api/customers?page=99999999999999999999999").status_code == 404


@pytest.mark.django_db
def test_alert_filters_take_true_or_false_and_whole_ids(manager, api_for):
    client = api_for(manager)
    assert client.get("/api/alerts?isRead=true").status_code == 200
    for query, field in (("isRead=maybe", "isRead"), ("customerId=0", "customerId"), ("customerId=2.5", "customerId")):
        response = client.get(f"/api/alerts?{query}")
        assert response.status_code == 400, query
        assert error_fields(response) == {field}


@pytest.mark.django_db
def test_timeline_paging_parameters_are_validated(manager, make_customer, api_for):
    customer = make_customer(owner=manager)
    client = api_for(manager)
    for query, field in (
        ("per_page=0", "per_page"),
        ("cursor=1~x~", "cursor"),
        ("cursor=2026-01-01T00:00:00Z~x~1", "cursor"),
    ):
        response = client.get(f"/api/customers/{customer.pk}/timeline?{query}")
        assert response.status_code == 400, query
        assert error_fields(response) == {field}
    assert (
        client.get(f"/api/customers/{customer.pk}/timeline?cursor=1764547200000000~intervention~12").status_code == 200
    )


@pytest.mark.django_db
def test_trigger_by_an_intervention_type_no_playbook_answers_is_404(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    response = api_for(csm).post(
        "/api/v1/playbooks/trigger", {"customerId": customer.pk, "type": "Nothing Answers This"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert Intervention.objects.count() == 0


@pytest.mark.django_db
def test_page_numbers_of_thousands_of_digits_are_answered_not_a_500(manager, make_customer, api_for):
    make_customer(owner=manager)  # an empty list answers any page number with its one empty page
    client = api_for(manager)
    assert client.get("/api/customers?page=" + "9" * 5000).status_code == 404
    assert client.get("/api/customers?per_page=" + "9" * 5000).status_code == 200
    response = client.get("/api/customers?page=" + "0" * 5000)
    assert response.status_code == 400
    assert error_fields(response) == {"page"}


def test_a_nested_invalid_input_error_reads_as_its_first_message():
    from core.exceptions import InvalidInputError

    nested = InvalidInputError({"rules": {2: {"params": ["days: required"]}}, "causes": ["must be a list"]})
    assert (str(nested), str(InvalidInputError({"steps": []})), str(InvalidInputError({}))) == (
        "days: required",
        "Invalid input",
        "Invalid input",
    )
