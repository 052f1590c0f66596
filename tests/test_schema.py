"""The OpenAPI schema builds, validates and raises no warnings (a CI gate, RELIABILITY F1)."""

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_builds_and_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert schema["openapi"].startswith("3.")
    assert set(schema["components"]["securitySchemes"]) == {"jwtBearer", "jwtCookie"}
    customers = schema["paths"]["/api/customers"]["get"]
    assert {p["name"] for p in customers["parameters"]} >= {"page", "per_page", "search", "riskLevel", "ordering"}
    item = schema["components"]["schemas"]["CustomerOutput"]["properties"]
    assert {"churnRisk", "churnProbability", "riskLevel", "healthScore"} <= set(item)


@pytest.fixture(scope="module")
def schema(django_db_blocker, tmp_path_factory):
    target = tmp_path_factory.mktemp("schema") / "schema.yml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--file", str(target))
    return yaml.safe_load(target.read_text())


def parameter(schema: dict, path: str, name: str) -> dict:
    return next(p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name)


def test_bearer_token_and_cookie_are_alternatives_not_both_required(schema):
    assert schema["paths"]["/api/customers"]["get"]["security"] == [{"jwtBearer": []}, {"jwtCookie": []}]


def test_schema_states_the_bounds_the_api_enforces(schema):
    # A larger per_page is capped, not refused: no maximum; below 1 is a 400.
    assert parameter(schema, "/api/customers", "per_page")["schema"] == {"type": "integer", "minimum": 1}
    assert parameter(schema, "/api/customers", "ownerId")["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**31 - 1,
    }
    assert parameter(schema, "/api/customers", "search")["schema"]["maxLength"] == 200
    components = schema["components"]["schemas"]
    assert components["AlertSnoozeInputRequest"]["oneOf"] == [{"required": ["until"]}, {"required": ["minutes"]}]
    assert schema["paths"]["/api/alerts/{id}/snooze"]["post"]["requestBody"]["required"] is True
    assert components["LoginInputRequest"]["anyOf"] == [{"required": ["username"]}, {"required": ["email"]}]
    assert components["OutcomeInputRequest"]["properties"]["revenueImpact"]["type"] == "number"
    # A required text cannot be only spaces (DRF trims it, then finds it blank), no text holds NUL.
    assert components["InterventionCreateRequest"]["properties"]["type"]["pattern"] == r"^[^\x00]*[^\s\x00][^\x00]*$"
    assert components["InterventionCreateRequest"]["properties"]["notes"]["oneOf"] == [
        {"type": "string", "pattern": r"^[^\x00]+$", "maxLength": 10_000},
        {"type": "string", "maxLength": 0},
    ]


def test_timeline_cursor_round_trips_and_matches_its_documented_pattern(schema):
    import datetime as dt
    import re

    from customers.timeline import cursor_decode, cursor_encode

    at = dt.datetime(2026, 12, 6, 16, 35, 43, 508924, tzinfo=dt.UTC)
    text = cursor_encode((at, "intervention", 23))
    assert text == "1796574943508924~intervention~23"
    assert cursor_decode(text) == (at, "intervention", 23)
    pattern = parameter(schema, "/api/customers/{id}/timeline", "cursor")["schema"]["pattern"]
    assert re.fullmatch(pattern, text) and re.fullmatch(pattern, "")
    with pytest.raises(ValueError):
        cursor_decode("2026-12-06T16:35:43Z~intervention~23")
