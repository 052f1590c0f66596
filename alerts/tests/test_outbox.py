"""The notifications outbox: an alert committed while the broker is down is notified once the
broker is back (the beat sweep fans it out), exactly once, and a request whose follow-up work
cannot reach the broker still answers promptly with its committed result.

The broker is really down: Celery is pointed at a loopback port nothing listens on.
"""

import datetime as dt
import time

import pytest
import time_machine
from django.utils import timezone

from alerts.models import Alert, NotificationDelivery
from alerts.services import alert_create, alert_snooze
from alerts.tasks import dispatch_notifications, fan_out_alerts
from churnshield.celery import app
from core.enqueue import enqueue
from playbooks.tasks import evaluate_trigger_rules
from tests.helpers import reset_broker_pools
from tests.live.conftest import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_down():
    """Celery publishing for real (not eager) to a broker and result backend that refuse connections."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app.conf.update(broker_url=dead, result_backend=dead, task_always_eager=False)
    reset_broker_pools()
    forget_result_backend()  # built from the configuration on first use
    yield
    app.conf.update(task_always_eager=True)  # the broker is "back": the sweep's sends run in-process
    reset_broker_pools()
    forget_result_backend()


def forget_result_backend() -> None:
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


def broker_back() -> None:
    app.conf.update(task_always_eager=True)


def inbox(smtp) -> list[tuple[str, str]]:
    return sorted((m["X-Envelope-To"], m["Subject"]) for m in smtp.messages)


def test_an_alert_committed_while_the_broker_is_down_is_notified_once_the_broker_is_back(
    smtp, noise, csm, manager, make_customer, broker_down, django_capture_on_commit_callbacks
):
    customer = make_customer(owner=csm, name="Acme", company="")
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        alert = alert_create(title="Risk rose", message="m", severity="critical", customer_id=customer.pk)
    assert len(callbacks) == 1  # the fan-out's enqueue ran, failed and was absorbed
    assert time.monotonic() - started < 2
    alert.refresh_from_db()
    assert alert.fan_out_pending is True
    assert NotificationDelivery.objects.count() == 0 and smtp.messages == []

    broker_back()
    assert dispatch_notifications() == 0  # within the grace the commit's own fan-out may still come
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=61)):
        dispatch_notifications()
    assert inbox(smtp) == [
        (csm.email, "[ChurnShield] [CRITICAL] Risk rose"),
        (manager.email, "[ChurnShield] [CRITICAL] Risk rose"),
    ]
    alert.refresh_from_db()
    assert alert.fan_out_pending is False

    # The fan-out never runs twice: the lost task delivered late, or the sweep again, add nothing.
    assert fan_out_alerts([alert.pk]) == 0
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=3)):
        dispatch_notifications()
    assert NotificationDelivery.objects.filter(alerts=alert).count() == 2
    assert len(smtp.messages) == 2


def test_the_enqueued_fan_out_clears_the_debt_so_the_sweep_sends_nothing_more(
    smtp, noise, csm, make_customer, django_capture_on_commit_callbacks
):
    customer = make_customer(owner=csm, name="Acme", company="")
    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_create(title="Payment failed", message="m", severity="high", customer_id=customer.pk)
    alert.refresh_from_db()
    assert (alert.fan_out_pending, inbox(smtp)) == (False, [(csm.email, "[ChurnShield] [HIGH] Payment failed")])
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=2)):
        dispatch_notifications()
    assert len(smtp.messages) == 1
    assert NotificationDelivery.objects.count() == 1


def test_an_alert_born_snoozed_owes_no_fan_out_and_the_sweep_keeps_its_group_quiet(
    smtp, noise, csm, make_customer, broker_down, django_capture_on_commit_callbacks
):
    customer = make_customer(owner=csm)
    broker_back()
    with django_capture_on_commit_callbacks(execute=True):
        first = alert_create(title="First", message="m", severity="high", customer_id=customer.pk)
    alert_snooze(user=csm, alert_id=first.pk, until=timezone.now() + dt.timedelta(hours=2))
    smtp.messages.clear()
    with django_capture_on_commit_callbacks(execute=True):
        absorbed = alert_create(title="Same news", message="m", severity="medium", customer_id=customer.pk)
    absorbed.refresh_from_db()
    assert (absorbed.status, absorbed.fan_out_pending) == ("snoozed", False)
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=2)):
        dispatch_notifications()
    assert smtp.messages == []
    assert NotificationDelivery.objects.filter(alerts=absorbed).count() == 0


def test_a_request_whose_follow_up_cannot_reach_the_broker_answers_at_once_with_its_write(
    settings, csm, make_customer, api_for, broker_down, django_capture_on_commit_callbacks
):
    # Low thresholds: a plain customer's first real-time score is a rise to high (a critical alert).
    settings.RISK_HIGH_THRESHOLD, settings.RISK_MEDIUM_THRESHOLD = 0.05, 0.02
    customer = make_customer(owner=csm, churn_risk=0)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api_for(csm).post("/api/v1/churn/predict", {"customerId": customer.pk}, format="json")
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.content
    assert response.json()["riskLevel"] == "high"
    assert len(callbacks) == 2  # the trigger rules' and the fan-out's enqueues, both failed and absorbed
    assert elapsed < 3
    (alert,) = Alert.objects.filter(customer=customer)
    assert (alert.severity, alert.source, alert.fan_out_pending) == ("critical", "risk_rise", True)


def test_enqueue_reports_a_broker_it_cannot_reach_without_raising(broker_down, caplog):
    started = time.monotonic()
    assert enqueue(evaluate_trigger_rules, [1]) is False
    assert time.monotonic() - started < 1
    assert "could not publish playbooks.tasks.evaluate_trigger_rules" in caplog.text
