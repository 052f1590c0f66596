"""Structured logs without secrets from a real server, request ids into a real Celery worker, and
Sentry events delivered to a loopback ingest endpoint."""

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from churnshield.celery import app
from churnshield.tasks import flush_expired_tokens
from monitoring.context import request_id_var
from monitoring.models import TaskAttempt
from tests.live.conftest import ROOT, VENV_BIN, eventually, free_port, service_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PASSWORD = "Corr3ct-Horse-Battery-77"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "sk_live_51HxYzAbCdEfGhIjKlMnOp"


def json_lines(path) -> list[dict]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for line in lines:
        assert line.startswith("{"), f"not a JSON log line: {line[:200]}"
        parsed.append(json.loads(line))
    return parsed


def test_server_logs_are_json_with_request_ids_and_no_secrets(start_process, make_user, make_customer):
    user = make_user("csm", username="logger-csm", password=PASSWORD)
    make_customer(owner=user)
    port = free_port()
    process = start_process(
        [str(VENV_BIN / "uvicorn"), "churnshield.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        service_env(CHURNSHIELD_TEST_JSON_LOGS="1", LOG_LEVEL="DEBUG"),
        "uvicorn-json-logs",
    )
    base = f"http://127.0.0.1:{port}"
    eventually(lambda: _up(base), timeout=30, interval=0.2)

    secrets = [PASSWORD, WEBHOOK_SECRET, API_KEY]
    with httpx.Client(base_url=base, timeout=10) as client:
        bad = client.post("/api/auth/login", json={"username": "logger-csm", "password": PASSWORD + "x"})
        assert bad.status_code == 401
        secrets.append(PASSWORD + "x")
        login = client.post(
            "/api/auth/login",
            json={"username": "logger-csm", "password": PASSWORD},
            headers={"X-Request-ID": "req-login-1"},
        )
        assert login.status_code == 200 and login.headers["X-Request-ID"] == "req-login-1"
        tokens = login.json()
        refreshed = client.post("/api/auth/refresh", json={"refresh": tokens["refresh"]})
        assert refreshed.status_code == 200
        by_cookie = client.post("/api/auth/refresh", headers={"Origin": "http://localhost:8000"})  # cookie jar
        assert by_cookie.status_code == 200
        secrets += [tokens["access"], tokens["refresh"], *refreshed.json().values(), *by_cookie.json().values()]
        listed = client.get(
            "/api/customers",
            params={"token": tokens["access"], "api_key": API_KEY},
            headers={"Authorization": f"Bearer {refreshed.json()['access']}"},
        )
        assert listed.status_code == 200
        # A webhook-like delivery carrying a signature and a secret, which the log must not show.
        client.post(
            "/api/webhooks/stripe",
            content=json.dumps({"secret": WEBHOOK_SECRET, "api_key": API_KEY}),
            headers={"Stripe-Signature": "t=1614265330,v1=" + "ab" * 32, "Content-Type": "application/json"},
        )
        secrets.append("ab" * 32)
    process.terminate()
    process.wait(timeout=10)

    log_path = ROOT / ".pytest-logs" / "uvicorn-json-logs.log"
    text = log_path.read_text(errors="replace")
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:12]}…) leaked into the logs"
    records = json_lines(log_path)
    access = [r for r in records if r.get("logger") == "churnshield.access"]
    assert len(access) >= 6
    login_line = next(r for r in access if r.get("request_id") == "req-login-1")
    assert (login_line["path"], login_line["status"], login_line["method"]) == ("/api/auth/login", 200, "POST")
    assert login_line["duration_ms"] > 0 and login_line["level"] == "INFO" and login_line["ts"].endswith("+00:00")
    # Every access line has a request id; none carries a query string.
    assert all(r.get("request_id") for r in access)
    assert not any("?" in r["path"] for r in access)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_request_id_travels_into_a_celery_task_on_a_real_worker(start_process, redis_url):
    env = service_env(REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false", CHURNSHIELD_TEST_JSON_LOGS="1")
    start_process(
        [str(VENV_BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "--loglevel", "INFO"],
        env,
        "celery-worker-request-id",
    )
    app.conf.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False)
    token = request_id_var.set("req-celery-42")
    try:
        result = flush_expired_tokens.delay()
        result.get(timeout=60)
    finally:
        request_id_var.reset(token)
        app.conf.update(task_always_eager=True)

    log_path = ROOT / ".pytest-logs" / "celery-worker-request-id.log"

    def task_line():
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith("{")]
        return next(
            (
                record
                for record in map(json.loads, lines)
                if record.get("logger") == "churnshield.tasks" and record.get("task") == flush_expired_tokens.name
            ),
            None,
        )

    record = eventually(task_line, timeout=20)
    assert record["request_id"] == "req-celery-42"
    assert record["task_id"] == result.id and record["state"] == "SUCCESS"
    # GuardedTask counted the start in the database before running.
    attempt = TaskAttempt.objects.get(task_id=result.id)
    assert (attempt.attempts, attempt.status) == (1, TaskAttempt.Status.SUCCEEDED)


class _Ingest(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        type(self).received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id":"ok"}')

    def log_message(self, *args):
        pass


SENTRY_SCRIPT = r"""
import logging, os, django
django.setup()
import sentry_sdk
from monitoring.context import request_id_var
request_id_var.set("req-sentry-7")
try:
    raise ZeroDivisionError("boom while syncing with Authorization: Bearer " + os.environ["LEAKY"])
except ZeroDivisionError:
    logging.getLogger("churnshield.sync").exception("sync failed, api_key=" + os.environ["LEAKY"])
sentry_sdk.flush(timeout=10)
"""


def test_sentry_events_reach_the_ingest_endpoint_scrubbed():
    _Ingest.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="churnshield.settings.test", LEAKY="tok_" + "Z9" * 12)
        env["SENTRY_DSN"] = f"http://publickey123@127.0.0.1:{port}/42"
        env.pop("REDIS_URL", None)
        result = subprocess.run(
            [sys.executable, "-c", SENTRY_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        eventually(lambda: _Ingest.received, timeout=10)
    finally:
        server.shutdown()
    envelope = b"\n".join(_Ingest.received).decode()
    events = [json.loads(line) for line in envelope.splitlines() if line.startswith("{") and '"exception"' in line]
    assert events, envelope[:500]
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "ZeroDivisionError"
    assert event["tags"]["request_id"] == "req-sentry-7"
    assert "Z9Z9Z9" not in envelope
