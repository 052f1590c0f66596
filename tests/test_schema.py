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
