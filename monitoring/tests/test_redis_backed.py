"""Queue depth, beat's tick and the Redis readiness check against a private redis-server."""

import time

import pytest
from django.test import Client, override_settings

from monitoring.metrics import collector
from monitoring.selectors import BEAT_TICK_KEY
from monitoring.tests.test_health_and_metrics import metric_value
from tests.faults.harness import PrivateRedis


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    collector.clear_cache()
    yield server
    server.kill()
    collector.clear_cache()


@pytest.mark.django_db
def test_queue_depth_counts_every_priority_list_and_unacked(redis_server):
    client = redis_server.client()
    client.rpush("celery", "a", "b", "c")
    client.rpush("celery\x06\x163", "d")
    client.rpush("scoring", "e", "f")
    client.hset("unacked", mapping={"t1": "x", "t2": "y"})
    client.set(BEAT_TICK_KEY, f"{time.time() - 12:.3f}")
    with override_settings(
        CELERY_BROKER_URL=redis_server.url,
        REDIS_URL=redis_server.url,
        CELERY_TASK_ROUTES={"predictions.tasks.*": {"queue": "scoring"}},
        METRICS_ALLOWED_NETWORKS=["127.0.0.0/8"],
    ):
        text = Client().get("/metrics").content.decode()
    assert metric_value(text, "churnshield_celery_queue_length", 'queue="celery"') == 4
    assert metric_value(text, "churnshield_celery_queue_length", 'queue="scoring"') == 2
    assert metric_value(text, "churnshield_celery_unacked_messages") == 2
    assert 11 <= metric_value(text, "churnshield_beat_last_tick_age_seconds") < 120  # a loaded machine is slow


@pytest.mark.django_db(transaction=True)
def test_readyz_redis_and_beat_checks(redis_server):
    settings = {
        "REDIS_URL": redis_server.url,
        "CELERY_BROKER_URL": redis_server.url,
        "CELERY_TASK_ALWAYS_EAGER": False,
        "READYZ_CHECKS": ["redis", "broker", "beat"],
        "READYZ_BEAT_MAX_AGE_SECONDS": 60,
    }
    from churnshield.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = redis_server.url
    try:
        with override_settings(**settings):
            never = Client().get("/readyz")
            assert never.status_code == 503
            assert never.json()["checks"]["beat"]["error"] == "beat has never ticked"
            assert never.json()["checks"]["redis"]["status"] == "ok"
            assert never.json()["checks"]["broker"]["status"] == "ok"

            redis_server.client().set(BEAT_TICK_KEY, f"{time.time() - 5:.3f}")
            assert Client().get("/readyz").status_code == 200

            redis_server.client().set(BEAT_TICK_KEY, f"{time.time() - 300:.3f}")
            stale = Client().get("/readyz").json()["checks"]["beat"]
            assert stale["status"] == "error" and "limit 60s" in stale["error"]

            redis_server.kill()
            started = time.monotonic()
            down = Client().get("/readyz")
            assert time.monotonic() - started < 8
            checks = down.json()["checks"]
            assert down.status_code == 503
            assert {checks[name]["status"] for name in ("redis", "broker", "beat")} == {"error"}
    finally:
        app.conf.broker_url = previous
