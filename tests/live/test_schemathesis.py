"""F1 (RELIABILITY.md): schemathesis against the served /api/schema, through a real uvicorn.

Every operation, signed in as an admin (the role that reaches every endpoint), with generated
valid and invalid inputs, every check schemathesis has but two heuristics (HEURISTIC, below), and
its stateful phase (links inferred from the schema). Pass: 0 server errors, 0 undocumented status
codes, 0 responses that break their documented schema, content type or headers.

Random ids would almost always be 404s, so half of the generated path ids and customer ids are
drawn from rows this test creates in the states that matter (a running, a cancelled and a failed
execution, an open and a resolved alert, a pull and a push integration): the 200 and 409 bodies
get checked too.
"""

import subprocess

import pytest

from alerts.models import Alert
from churnshield.auth.tokens import issue_tokens
from integrations.models import Integration
from playbooks.models import PlaybookExecution
from playbooks.services import playbook_trigger, playbook_upsert
from tests.helpers import make_alert, make_intervention
from tests.live.conftest import ROOT, VENV_BIN

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
# Every check but two heuristics that guess validity from the schema alone and here report the
# schema's silence, not a fault: negative_data_rejection counts a request without the
# `cs_access` cookie as invalid although the Bearer token is the documented alternative (and
# per_page above the maximum is capped, as documented); positive_data_acceptance expects any
# opaque cursor, any date or any CSV text to be accepted, where the API answers a named 400.
HEURISTIC = "positive_data_acceptance,negative_data_rejection"


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
        executions.append(answer["executionId"])
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
            "-c", "all", "--exclude-checks", HEURISTIC,
            "-n", "15", "--seed", "7",
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
