"""The log pipeline's redaction and JSON shape, and the Celery reliability invariants (C3)."""

import io
import json
import logging
import logging.config
import threading

import pytest
from django.conf import settings

from churnshield.celery import app
from monitoring.context import request_id_var
from monitoring.logs import build_logging
from monitoring.reliability import GuardedTask

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo0Mn0.c2lnbmF0dXJlLXZhbHVlLWhlcmU"


@pytest.fixture
def captured():
    stream = io.StringIO()
    config = build_logging(level="DEBUG")
    config["handlers"]["console"]["stream"] = stream
    config["root"]["handlers"] = ["console"]
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig(settings.LOGGING)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("message", "args", "secret"),
    [
        ("got token %s", (JWT,), JWT),
        ("header Authorization: Bearer %s", ("abcdefghijklmnop1234",), "abcdefghijklmnop1234"),
        ("login password=%s user=bob", ("hunter2-Secret",), "hunter2-Secret"),
        ("payload %s", ('{"password": "pw-in-json-1", "name": "x"}',), "pw-in-json-1"),
        ("secret rotated to %s", ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("stripe key %s", ("sk_live_51HxYzAbCdEfGh",), "51HxYzAbCdEfGh"),
        ("GET /api/x?api_key=%s&page=2", ("key-in-query-99",), "key-in-query-99"),
        ("signature=%s", ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",), "g0hM9SsE"),
    ],
)
def test_secrets_are_redacted_from_messages(captured, message, args, secret):
    logging.getLogger("churnshield.test").warning(message, *args)
    [record] = lines(captured)
    assert secret not in captured.getvalue()
    assert "[REDACTED]" in record["message"]


def test_tracebacks_and_extras_are_redacted_and_ids_attached(captured):
    token = request_id_var.set("req-abc")
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("churnshield.test").exception("failed", extra={"detail": f"password={JWT}"})
    finally:
        request_id_var.reset(token)
    text = captured.getvalue()
    assert JWT not in text
    [record] = lines(captured)
    assert record["request_id"] == "req-abc" and record["level"] == "ERROR" and "ValueError" in record["exc_info"]
    assert record["ts"].endswith("+00:00")  # UTC


def test_celery_runs_late_acks_one_at_a_time_in_utc():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_reject_on_worker_lost is False  # only GuardedTask opts in
    assert conf.timezone == "UTC" and conf.enable_utc is True and settings.USE_TZ is True
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.beat_scheduler == "monitoring.beat:LockedDatabaseScheduler"
    vt = conf.broker_transport_options["visibility_timeout"]
    assert conf.result_backend_transport_options["visibility_timeout"] == vt


def test_every_request_thread_shares_the_one_result_backend():
    """The ASGI server runs each request on a new thread: a backend per thread was built (and
    paid for) by every request that publishes a task."""
    seen = []
    thread = threading.Thread(target=lambda: seen.append(app.backend))
    thread.start()
    thread.join()
    assert seen[0] is app.backend


def test_every_task_stops_before_the_visibility_timeout_and_only_guarded_tasks_requeue():
    """C3's invariant: soft limit < hard limit < visibility timeout, for every registered task."""
    app.loader.import_default_modules()
    vt = app.conf.broker_transport_options["visibility_timeout"]
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert len(ours) >= 8
    for name, task in ours.items():
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        assert hard and soft, f"{name} has no time limit"
        assert soft < hard < vt, f"{name}: soft {soft} < hard {hard} < visibility timeout {vt} does not hold"
        assert task.acks_late, f"{name} acks early"
        if task.reject_on_worker_lost:
            assert isinstance(task, GuardedTask), f"{name} re-queues on worker loss without the poison guard"
