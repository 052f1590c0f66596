"""F1 (docs/reliability.md): schemathesis against the served /api/schema, through a real uvicorn.

Every operation, signed in as an admin (the role that reaches every endpoint), with generated
valid and invalid inputs, every check schemathesis has, and its stateful phase (links inferred
from the schema). Pass: 0 server errors, 0 undocumented status codes, 0 responses that break
their documented schema, content type or headers, every schema-violating request refused with a
4xx and every schema-valid request accepted (but RULES_BEYOND_THE_SCHEMA, below).

Random ids would almost always be 404s, so half of the generated path ids and customer ids are
drawn from rows this test creates in the states that matter (a running, a cancelled and a failed
execution, an open and a resolved alert, a pull and a push integration): the 200 and 409 bodies
get checked too.
"""

import os
import subprocess

import pytest

from alerts.models import Alert
from core.auth.tokens import issue_tokens
from integrations.models import Integration
from playbooks.models import PlaybookExecution
from playbooks.services import playbook_trigger, playbook_upsert
from tests.helpers import make_alert, make_intervention
from tests.live.conftest import ROOT, VENV_BIN

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
# positive_data_acceptance (every request the schema allows gets a 2xx, or a 404/409 for the
# state of a row) holds for every operation but these, whose 400s come from rules no JSON Schema
# can carry: the time of the request, the world outside, or the content of a document. The
# opposite check, negative_data_rejection, runs on them too.
RULES_BEYOND_THE_SCHEMA = {
    ("POST", "/api/alerts/{id}/snooze"): "`until` must fall within the next 30 days of now",
    ("PUT", "/api/notifications/preferences"): "a webhook URL's host must resolve to a public address",
    ("POST", "/api/playbooks/validate"): "a definition's steps: fields per type, forward-only jumps, templates",
    ("POST", "/api/import/customers/csv"): "the CSV text's header and rows",
    ("POST", "/api/imports"): "the uploaded files' and mapping file's contents",
}


def config(ids: dict[str, list[int]]) -> str:
    """schemathesis.toml: dictionaries of real ids, bound to the path and body parameters."""
    lines = []
    for name, values in ids.items():
        # Path ids are strings in the schema (the views take any text and answer 404 for a non-id).
        lines += [f"[dictionaries.{name}]", f"values = {[str(v) for v in sorted(values)]}", ""]
    lines += ["[parameters]", '"body.customerId" = { dictionary = "customers", probability = 0.5 }', ""]
    for prefix, name in (
        ("/api/playbook-executions/", "executions"),
        ("/api/alerts/", "alerts"),
        ("/api/customers/", "customers"),
        ("/api/integrations/", "integrations"),
        ("/api/interventions/", "interventions"),
    ):
        lines += [
            "[[operations]]",
            f'include-path-regex = "^{prefix}"',
            f'parameters = {{ "path.id" = {{ dictionary = "{name}", probability = 0.5 }} }}',
            "",
        ]
    for (method, path), _reason in RULES_BEYOND_THE_SCHEMA.items():
        lines += [
            "[[operations]]",
            f'include-path = "{path}"',
            f'include-method = "{method}"',
            "checks.positive_data_acceptance.enabled = false",
            "",
        ]
    return "\n".join(lines)


@pytest.fixture
def _pulls_fail_at_once(monkeypatch):
    # "Sync now" runs the pull in the server's process here (in-process tasks): one attempt
    # against the closed port, not five with backoff, so the 202 stays well inside the time limit.
    monkeypatch.setenv("INTEGRATION_HTTP_ATTEMPTS", "1")


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    _pulls_fail_at_once, asgi_server, make_user, make_customer, tmp_path
):
    admin = make_user("admin")
    customers = [make_customer(owner=admin) for _ in range(3)]
    playbook, _ = playbook_upsert(name="Save", data={"steps": [{"key": "pause", "type": "wait", "duration": "7d"}]})
    executions = []
    for customer in customers:
        answer = playbook_trigger(user=admin, customer_id=customer.pk, playbook_id=playbook.pk)
        executions.append(answer.execution.pk)
    PlaybookExecution.objects.filter(pk=executions[1]).update(status="cancelled")
    PlaybookExecution.objects.filter(pk=executions[2]).update(status="failed", error="boom")
    alerts = [make_alert(customers[0]).pk, make_alert(customers[1], status=Alert.Status.RESOLVED).pk]
    integrations = [
        Integration.objects.create(name="Segment", type="analytics", config={"provider": "segment"}).pk,
        Integration.objects.create(
            # "Sync now" pulls in-process here: against a closed loopback port, never the real Stripe.
            name="Stripe",
            type="payment",
            config={"provider": "stripe", "api_key": "sk_test_1", "api_base": "http://127.0.0.1:9"},
        ).pk,
    ]
    interventions = [make_intervention(customers[0]).pk]
    ids = {
        "customers": [c.pk for c in customers],
        "executions": executions,
        "alerts": alerts,
        "integrations": integrations,
        "interventions": interventions,
    }
    (tmp_path / "schemathesis.toml").write_text(config(ids))
    token = issue_tokens(admin)["access"]
    result = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"), "run", f"{asgi_server}/api/schema",
            "--url", asgi_server,
            "-H", f"Authorization: Bearer {token}",
            # No `-c all`: every check runs by default, and a check named on the command line
            # would override the per-operation exceptions in schemathesis.toml.
            # Seeded, so CI runs the same cases each time; the variables explore other ones.
            "-n", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"),
            "--seed", os.environ.get("SCHEMATHESIS_SEED", "7"),
            "--phases", "examples,coverage,fuzzing,stateful",
            "--request-timeout", "15",
            "--report-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # schemathesis reads schemathesis.toml and keeps a cache in the working directory
    )  # fmt: skip
    (ROOT / ".pytest-logs").mkdir(exist_ok=True)
    (ROOT / ".pytest-logs" / "schemathesis.txt").write_text(result.stdout + result.stderr)  # the whole report
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
