"""/healthz, /readyz and /metrics through the real URL conf and middleware."""

import datetime as dt
import re

import pytest
from django.test import Client, override_settings

from alerts.models import Alert
from monitoring.metrics import collector
from monitoring.tests.factories import make_batch_run, make_champion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_metrics():
    collector.clear_cache()
    yield
    collector.clear_cache()


def metric_value(text: str, name: str, labels: str = "") -> float | None:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{\})?") + r" ([0-9.e+-]+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_healthz_answers_without_touching_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


# Transactional: readiness checks run in worker threads, with connections of their own.
@pytest.mark.django_db(transaction=True)
@override_settings(REDIS_URL="", CELERY_TASK_ALWAYS_EAGER=True)
def test_readyz_is_503_until_a_champion_and_a_recent_batch_exist():
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "ok" and body["checks"]["database"]["ms"] >= 0
    assert body["checks"]["champion_model"] == {
        "status": "error",
        "ms": body["checks"]["champion_model"]["ms"],
        "error": "no champion model",
    }
    assert body["checks"]["last_batch"]["status"] == "error"
    # Embedded topology: no Redis, no broker, no worker, no beat to wait for.
    for name in ("redis", "broker", "worker", "beat"):
        assert body["checks"][name] == {"status": "skipped", "reason": "not configured"}

    model = make_champion()
    make_batch_run(model, finished_ago=dt.timedelta(hours=30))
    stale = Client().get("/readyz").json()
    assert stale["checks"]["champion_model"]["status"] == "ok"
    assert "limit 26h" in stale["checks"]["last_batch"]["error"]

    make_batch_run(model, finished_ago=dt.timedelta(hours=2))
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "ok"


@override_settings(METRICS_TOKEN="scrape-token-123456", METRICS_ALLOWED_NETWORKS=[])
def test_metrics_need_the_bearer_token():
    assert Client().get("/metrics").status_code == 401
    wrong = Client(headers={"Authorization": "Bearer nope"}).get("/metrics")
    assert wrong.status_code == 401 and wrong.json()["code"] == "not_authenticated"
    ok = Client(headers={"Authorization": "Bearer scrape-token-123456"}).get("/metrics")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")


@override_settings(METRICS_TOKEN="", METRICS_ALLOWED_NETWORKS=["10.0.0.0/8"])
def test_metrics_allow_a_listed_network_only():
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.5").get("/metrics").status_code == 401
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401


@override_settings(METRICS_TOKEN="", METRICS_ALLOWED_NETWORKS=["127.0.0.0/8"])
def test_metrics_report_requests_predictions_batches_model_and_alerts(make_customer):
    model = make_champion("rules-metrics-1")
    make_batch_run(model, finished_ago=dt.timedelta(days=2), seconds=10, scored=7)
    make_batch_run(model, finished_ago=dt.timedelta(minutes=30), seconds=42, scored=12)
    customer = make_customer()
    for severity in ("high", "high", "low"):
        Alert.objects.create(title="t", message="m", severity=severity, customer=customer)
    Client().get("/healthz")

    text = Client().get("/metrics").content.decode()
    assert metric_value(text, "churnshield_predictions_total", 'trigger="batch"') == 19
    assert metric_value(text, "churnshield_prediction_runs_total", 'status="completed",trigger="batch"') == 2
    assert metric_value(text, "churnshield_batch_duration_seconds") == pytest.approx(42, abs=0.01)
    assert 1790 <= metric_value(text, "churnshield_batch_age_seconds") <= 1900
    assert metric_value(text, "churnshield_batch_phase_seconds", 'phase="load"') == 1.5
    assert metric_value(text, "churnshield_model_info", 'kind="rules",version="rules-metrics-1"') == 1
    assert metric_value(text, "churnshield_alerts_raised_last_hour", 'severity="high"') == 2
    assert metric_value(text, "churnshield_alerts_unread") == 3
    assert metric_value(text, "churnshield_metrics_source_up", 'source="predictions.metrics.collect"') == 1
    # django-prometheus: request counts and latency histograms by view.
    assert re.search(
        r'^django_http_requests_latency_seconds_by_view_method_count\{method="GET",view="healthz"\} \d', text, re.M
    )
    assert "django_http_responses_total_by_status_total" in text


@override_settings(METRICS_TOKEN="", METRICS_ALLOWED_NETWORKS=["127.0.0.0/8"], MONITORING_METRICS_CACHE_SECONDS=0)
def test_a_broken_source_is_reported_not_fatal():
    with override_settings(MONITORING_METRIC_SOURCES=["monitoring.tests.factories.no_such_function"]):
        text = Client().get("/metrics").content.decode()
    assert (
        metric_value(text, "churnshield_metrics_source_up", 'source="monitoring.tests.factories.no_such_function"') == 0
    )


def test_request_id_is_echoed_or_minted():
    response = Client(headers={"X-Request-ID": "abc-123"}).get("/healthz")
    assert response["X-Request-ID"] == "abc-123"
    forged = Client(headers={"X-Request-ID": "bad id\nforged log line"}).get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", forged["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", Client().get("/healthz")["X-Request-ID"])


@override_settings(MONITORING_METRICS_CACHE_SECONDS=0)
def test_metrics_report_syncs_webhooks_deliveries_and_playbooks(make_customer, make_user):
    from django.utils import timezone

    from alerts.models import NotificationDelivery
    from integrations.models import Integration, WebhookEvent
    from playbooks.models import Playbook, PlaybookExecution, PlaybookStepRun

    now = timezone.now()
    stripe = Integration.objects.create(
        name="Billing", type="payment", config={"provider": "stripe"}, last_sync_at=now - dt.timedelta(minutes=20)
    )
    stripe.consecutive_failures = 2
    stripe.save()
    for n, status in enumerate(("received", "received", "dead")):
        WebhookEvent.objects.create(
            integration=stripe,
            provider="stripe",
            event_id=f"evt_{n}",
            body="{}",
            status=status,
            received_at=now - dt.timedelta(minutes=5),
            next_attempt_at=now,
        )
    customer = make_customer()
    alert = Alert.objects.create(title="t", message="m", severity="high", customer=customer)
    for status in ("sent", "sent", "failed"):
        NotificationDelivery.objects.create(
            alert=alert, channel="email", recipient=make_user("csm"), status=status, due_at=now
        )
    playbook = Playbook.objects.create(name="Metrics playbook", steps=[])
    execution = PlaybookExecution.objects.create(
        playbook=playbook, customer=customer, started_at=now, next_run_at=now - dt.timedelta(seconds=30)
    )
    PlaybookStepRun.objects.create(
        execution=execution, step_key="w", step_type="webhook", status="failed", started_at=now
    )

    text = Client().get("/metrics").content.decode()
    key = 'integration="Billing",provider="stripe"'
    assert 1190 <= metric_value(text, "churnshield_integration_sync_lag_seconds", key) <= 1300
    assert metric_value(text, "churnshield_integration_consecutive_failures", key) == 2
    assert metric_value(text, "churnshield_webhook_backlog", key) == 2
    assert metric_value(text, "churnshield_webhook_dead_letters", key) == 1
    assert metric_value(text, "churnshield_notification_deliveries_last_day", 'channel="email",status="sent"') == 2
    assert metric_value(text, "churnshield_notification_deliveries_last_day", 'channel="email",status="failed"') == 1
    assert metric_value(text, "churnshield_playbook_executions", 'status="running"') == 1
    assert metric_value(text, "churnshield_playbook_step_failures_last_day", 'step_type="webhook"') == 1
    assert 29 <= metric_value(text, "churnshield_playbook_due_lag_seconds") <= 120
