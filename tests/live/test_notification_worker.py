"""End to end through a real Celery worker over Redis: an alert ends as an email on a local SMTP server."""

import pytest

from alerts.models import NotificationDelivery, NotificationSettings
from alerts.services import alert_create
from alerts.tests.servers import start_smtp
from churnshield.celery import app
from tests.live.conftest import VENV_BIN, eventually, service_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_an_alert_is_delivered_as_email_by_the_worker(start_process, redis_url, csm, make_customer):
    smtp, controller = start_smtp()
    NotificationSettings.objects.create(pk=1, group_wait_seconds=0)
    customer = make_customer(owner=csm, name="Acme", company="")
    env = service_env(
        REDIS_URL=redis_url,
        CELERY_TASK_ALWAYS_EAGER="false",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp.port),
        EMAIL_USE_TLS="false",
    )
    start_process(
        [str(VENV_BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "--loglevel", "INFO"],
        env,
        "celery-worker-notifications",
    )
    app.conf.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False)
    try:
        alert = alert_create(
            title="Payment failed: Acme",
            message="Card declined.",
            severity="high",
            customer_id=customer.pk,
            source="payment_failed",
        )  # autocommit: the fan-out task is enqueued to Redis on commit
        eventually(lambda: smtp.messages, timeout=60, interval=0.2)
        (message,) = smtp.messages
        assert message["X-Envelope-To"] == csm.email
        assert message["Subject"] == "[ChurnShield] [HIGH] Payment failed: Acme"
        delivery = eventually(lambda: NotificationDelivery.objects.filter(alert=alert, status="sent").first())
        assert (delivery.channel, delivery.recipient_id, delivery.attempts) == ("email", csm.pk, 1)
    finally:
        app.conf.update(task_always_eager=True)
        controller.stop()
