"""The React app reads what the reference server sent: every response captured in
`tests/contract_examples/` (copied from ../shared/contract/examples, values random, lists cut to
three items) is compared with what we serve for the same request. Every key the example shows
must be present with a compatible JSON type, recursively (lists by their first element; `null` on
either side matches anything, ints and floats are both numbers). Extra keys are allowed: the
contract welcomes them. Values are not compared — they are random in the examples."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from customers.models import Customer
from demo.generator import generate
from interventions.models import Intervention
from playbooks.models import Playbook
from predictions.models import ModelVersion
from predictions.selectors import champion
from predictions.services.registry import model_train
from predictions.services.scoring import score_customers

EXAMPLES = Path(__file__).parent / "contract_examples"
# Fields the examples show that we do not serve yet, and why. Each needs the training run to
# measure something it does not measure today (the model card's inputs); listed so that the gap is
# visible and a new one fails this test. Remove an entry when the field is served.
KNOWN_GAPS = {
    "_api_ml_analytics.json $.modelPerformance.mlSuccessRate: missing": "undefined in the contract; no measure yet",
    "_model_metrics_latest.json $.feature_importance[0].stability: missing": "needs bootstrap importances at training",
    "_model_metrics_latest.json $.performance_by_segment.high_value: missing": "segments are plans, not value tiers",
    "_model_metrics_latest.json $.performance_by_segment.medium_value: missing": "segments are plans, not value tiers",
    "_model_metrics_latest.json $.performance_by_segment.low_value: missing": "segments are plans, not value tiers",
    "_model_metrics_latest.json $.drift_metrics.prediction_drift_score: missing": "training scores are not stored",
}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def shape_differences(example: Any, ours: Any, where: str = "$") -> list[str]:
    """How `ours` fails to offer what `example` shows: missing keys and type changes."""
    kinds = json_type(example), json_type(ours)
    if "null" in kinds:
        return []
    if kinds[0] != kinds[1]:
        return [f"{where}: {kinds[0]} in the example, {kinds[1]} here ({ours!r:.60})"]
    if isinstance(example, dict):
        problems = []
        for key in example:
            if key not in ours:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += shape_differences(example[key], ours[key], f"{where}.{key}")
        return problems
    if isinstance(example, list) and example and ours:
        return shape_differences(example[0], ours[0], f"{where}[0]")
    return []


def test_shape_differences_finds_missing_keys_and_type_changes():
    example = {"a": "1.0", "b": [{"c": 1, "d": True}], "e": None, "f": {"g": 2}}
    assert shape_differences(example, {"a": "2", "b": [{"c": 2.5, "d": False, "x": 1}], "e": 3, "f": {"g": 0}}) == []
    assert shape_differences(example, {"a": 1.0, "b": [{"d": "yes"}], "e": None, "f": {}}) == [
        "$.a: string in the example, number here (1.0)",
        "$.b[0].c: missing",
        "$.b[0].d: bool in the example, string here ('yes')",
        "$.f.g: missing",
    ]


@pytest.fixture
def book(db):
    """A small demo book with a trained champion and a scoring run, like `make run` serves."""
    generate(customers=300, seed=5, as_of=timezone.now().date(), activity_scale=0.3, progress=False)
    model_train(seed=0, min_positives=20)
    score_customers()


def requests(client, customer: Customer, intervention: Intervention, playbook: Playbook) -> dict[str, tuple]:
    """Example file → (status we must answer, our response) for the request the app makes."""
    cid, iid = customer.pk, intervention.pk
    other = Customer.objects.filter(owner=customer.owner).exclude(pk=cid).first()
    return {
        "customers.json": (200, client.get("/api/customers")),
        "customer1.json": (200, client.get(f"/api/customers/{cid}")),
        "customer404.json": (404, client.get("/api/customers/987654321")),
        "interventions.json": (200, client.get("/api/interventions")),
        "alerts.json": (200, client.get("/api/alerts")),
        "metrics.json": (200, client.get("/api/dashboard/metrics")),
        "chart.json": (200, client.get("/api/dashboard/chart-data")),
        "causes.json": (200, client.get("/api/v1/causes/explain")),
        "_api_interventions_analytics.json": (200, client.get("/api/interventions/analytics")),
        "_api_ml_analytics.json": (200, client.get("/api/ml/analytics")),
        "_api_ml_feature-importance.json": (200, client.get("/api/ml/feature-importance")),
        "_model_metrics_latest.json": (200, client.get("/model/metrics/latest")),
        "predict.json": (200, client.post("/api/v1/churn/predict", {"customerId": cid}, format="json")),
        "predict_badtype.json": (400, client.post("/api/v1/churn/predict", {"customerId": "abc"}, format="json")),
        "batch.json": (200, client.post("/api/ml/batch-predict", {"customerIds": [cid, other.pk]}, format="json")),
        "recommend.json": (200, client.post("/api/ml/recommend-intervention", {"customerId": cid}, format="json")),
        "intervention_patch.json": (
            200,
            client.patch(
                f"/api/interventions/{iid}", {"status": "completed", "completedAt": "2026-11-24"}, format="json"
            ),
        ),
        "bulk.json": (
            200,
            client.post("/api/interventions/bulk", {"taskIds": [str(iid)], "action": "escalate"}, format="json"),
        ),
        "bulkapply.json": (
            200,
            client.post(
                "/api/interventions/bulk-apply",
                {"userIds": [cid, other.pk], "interventionType": "agent_retention_call"},
                format="json",
            ),
        ),
        "outcome.json": (
            200,
            client.post(
                "/api/ml/update-outcome",
                {"customerId": cid, "intervention": intervention.type, "success": True, "revenueImpact": 500},
                format="json",
            ),
        ),
        "alert_read.json": (
            200,
            client.patch(f"/api/alerts/{customer.alerts.order_by('pk').first().pk}/read"),
        ),
        "trigger_simple.json": (
            200,
            client.post("/api/v1/playbooks/trigger", {"customerId": cid, "playbookId": playbook.pk}, format="json"),
        ),
    }


def test_every_example_is_checked(book, api_for):
    customer = Customer.objects.filter(is_active=True, owner__isnull=False, alerts__isnull=False).first()
    intervention = Intervention.objects.create(customer=customer, type="Onboarding Call", assigned_csm="Sam")
    playbook = Playbook.objects.filter(is_active=True).first()
    assert {path.name for path in EXAMPLES.glob("*.json")} == set(
        requests(api_for(customer.owner), customer, intervention, playbook)
    )


def test_responses_offer_every_field_the_examples_show(book, api_for):
    customer = Customer.objects.filter(is_active=True, owner__isnull=False, alerts__isnull=False).first()
    intervention = Intervention.objects.create(customer=customer, type="Onboarding Call", assigned_csm="Sam")
    playbook = Playbook.objects.filter(is_active=True).first()
    problems = []
    answers = requests(api_for(customer.owner), customer, intervention, playbook)
    for name, (status, response) in answers.items():
        if response.status_code != status:
            problems.append(f"{name}: status {response.status_code}, expected {status}: {response.content[:200]}")
            continue
        example = json.loads((EXAMPLES / name).read_text())
        ours = response.json()
        if isinstance(example, list):
            assert ours, f"{name}: the demo book gave an empty list; nothing to compare"
        problems += [f"{name} {problem}" for problem in shape_differences(example, ours)]
    known = set(KNOWN_GAPS)
    if champion().kind == ModelVersion.Kind.RULES:
        # The rules won on this small book: their card has the measured figures but no importances.
        assert answers["_model_metrics_latest.json"][1].json()["cv_metrics"]["roc_auc"] is not None
        known.discard("_model_metrics_latest.json $.feature_importance[0].stability: missing")
    assert sorted(problems) == sorted(known), "\n".join(sorted(set(problems) ^ known))


def test_model_card_operating_points_and_accuracy_from_the_threshold_table():
    from predictions.selectors import _accuracy, _operating_points

    table = [
        {"threshold": 0.1, "contacted": 60, "precision": 0.3, "recall": 0.96},
        {"threshold": 0.2, "contacted": 40, "precision": 0.45, "recall": 0.95},
        {"threshold": 0.5, "contacted": 10, "precision": 0.8, "recall": 0.4},
        {"threshold": 0.9, "contacted": 2, "precision": 1.0, "recall": 0.1},
    ]
    assert _operating_points(table) == {"precision_at_95_recall": 0.45, "recall_at_95_precision": 0.1}
    assert _operating_points(table[:3]) == {"precision_at_95_recall": 0.45, "recall_at_95_precision": None}
    # 100 samples, 20 positive; at 0.5: 8 true positives, 2 false positives, 12 missed → 86 % right.
    assert _accuracy({"n_samples": 100, "positive_rate": 0.2}, table[2]) == 0.86
    assert _accuracy({}, table[2]) is None
