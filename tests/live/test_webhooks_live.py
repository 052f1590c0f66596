"""Webhooks through the real ASGI server and a real Celery worker over Redis.

W3: with no worker running, every delivery is answered 2xx fast and stored `received`; once a
worker starts, all of them are processed, none twice. Then "sync now" over HTTP runs the pull in
the worker against a loopback Stripe.
"""

import hashlib
import hmac
import json
import statistics
import time

import httpx
import pytest

from customers.models import Customer
from integrations.models import Integration, SyncRun, WebhookEvent
from integrations.tests.fakes import FakeProvider, stripe_customer, stripe_list, stripe_subscription
from tests.helpers import client_for
from tests.live.conftest import VENV_BIN, eventually, serve_asgi, service_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
SECRET = "segment-live-secret"


def start_web(start_process, env) -> str:
    return serve_asgi(start_process, env, "uvicorn-webhooks")


def start_worker(start_process, env) -> None:
    start_process(
        [str(VENV_BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "--loglevel", "INFO"],
        env,
        "celery-worker-webhooks",
    )


def test_w3_deliveries_are_accepted_with_workers_down_and_processed_after_restart(
    start_process, redis_url, make_customer, manager
):
    customers = [make_customer(email=f"live{i}@example.com", feature_usage={}) for i in range(10)]
    segment = Integration.objects.create(
        name="Segment", type="analytics", config={"provider": "segment", "signing_secret": SECRET}
    )
    env = service_env(REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false")
    base = start_web(start_process, env)

    latencies, statuses = [], []
    with httpx.Client(base_url=base, timeout=10) as client:
        for n in range(300):
            body = json.dumps(
                {
                    "messageId": f"live-{n}",
                    "type": "track",
                    "event": "Exported",
                    "userId": f"user-{n % 10}",
                    "context": {"traits": {"email": customers[n % 10].email}},
                }
            ).encode()
            signature = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
            headers = {"Content-Type": "application/json", "X-Signature": signature}
            started = time.perf_counter()
            for _ in range(2 if n % 5 == 0 else 1):  # 20 % delivered twice
                statuses.append(client.post(f"/api/webhooks/segment/{segment.pk}", content=body, headers=headers))
            latencies.append(time.perf_counter() - started)
    assert {r.status_code for r in statuses} == {200}
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 0.3, f"p99 accept latency {p99 * 1000:.0f} ms"
    assert WebhookEvent.objects.filter(status="received").count() == 300  # nothing processed in the request

    start_worker(start_process, env)
    eventually(lambda: WebhookEvent.objects.filter(status="processed").count() == 300, timeout=120, interval=0.2)
    usage = {c.email: c.feature_usage for c in Customer.objects.filter(pk__in=[c.pk for c in customers])}
    assert usage == {c.email: {"Exported": 30} for c in customers}  # 0 lost, 0 applied twice

    # "Sync now" over HTTP: the worker pulls from a loopback Stripe.
    fake = FakeProvider()
    try:
        objects = [stripe_customer(n, f"pulled{n}@example.com") for n in range(120)]
        subs = [stripe_subscription(n, f"cus_{n}") for n in range(120)]
        fake.routes[("GET", "/v1/customers")] = lambda p, q, b: stripe_list(objects, q, p)
        fake.routes[("GET", "/v1/subscriptions")] = lambda p, q, b: stripe_list(subs, q, p)
        stripe = Integration.objects.create(
            name="Stripe", type="payment", config={"provider": "stripe", "api_key": "sk", "api_base": fake.base_url}
        )
        token = client_for(manager)._credentials["HTTP_AUTHORIZATION"]
        response = httpx.post(f"{base}/api/integrations/{stripe.pk}/sync", headers={"Authorization": token})
        assert response.status_code == 202, response.text
        run = eventually(
            lambda: SyncRun.objects.filter(pk=response.json()["id"]).exclude(status="running").first(), timeout=60
        )
        assert (run.status, run.fetched, run.created) == ("succeeded", 240, 240), run.error
        assert Customer.objects.filter(email__startswith="pulled").count() == 120
        stripe.refresh_from_db()
        assert stripe.status == "connected" and stripe.last_sync_at is not None
    finally:
        fake.close()
