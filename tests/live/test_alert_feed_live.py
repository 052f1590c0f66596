"""The live alert feed end to end: a real uvicorn, the Redis pub/sub channel layer, alerts raised
by another process, a WebSocket client and (second test) headless Chromium in the Django admin."""

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.live.conftest import ROOT, VENV_BIN, eventually, free_port, service_env

# Transactional: the server and the alert-raising process must see the rows the test commits.
pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def raise_alert_elsewhere(redis_url: str, **fields) -> subprocess.Popen:
    """Another process raises the alert through the service; it prints the alert id and the wall
    clock right after the commit (autocommit: the broadcast runs inside alert_create)."""
    code = (
        "import json, time\n"
        "from alerts.services import alert_create\n"
        f"alert = alert_create(**{fields!r})\n"
        "print(json.dumps({'id': alert.pk, 'committed': time.time()}))\n"
    )
    return subprocess.Popen(
        [str(VENV_BIN / "python"), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=service_env(REDIS_URL=redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def ticket_for(base: str, username: str) -> str:
    with httpx.Client(base_url=base, timeout=10) as browser:
        assert browser.post("/api/auth/login", json={"username": username, "password": "s3cret-pass-123"}).is_success
        response = browser.post("/api/alerts/ws-ticket", headers={"Origin": base})
        assert response.status_code == 200
        return response.json()["ticket"]


def test_alert_from_another_process_reaches_only_its_owners_socket(
    redis_url, asgi_server, csm, other_csm, make_customer
):
    customer = make_customer(owner=csm)
    ws_base = asgi_server.replace("http://", "ws://")
    mine = connect(f"{ws_base}/ws/alerts?ticket={ticket_for(asgi_server, csm.username)}", origin=asgi_server)
    theirs = connect(f"{ws_base}/ws/alerts?ticket={ticket_for(asgi_server, other_csm.username)}", origin=asgi_server)
    with mine, theirs:
        for socket in (mine, theirs):
            socket.send(json.dumps({"type": "resume", "lastId": 0}))
            assert json.loads(socket.recv(timeout=10))["type"] == "ready"
        process = raise_alert_elsewhere(redis_url, title="Payment failed", message="x", customer_id=customer.pk)
        # Read the socket before waiting for the producer to exit: its teardown is not delivery time.
        # Its start is not either (Django's setup in a new process can take 10 s on a busy machine):
        # delivery is timed from the commit, below.
        message = json.loads(mine.recv(timeout=60))
        received = time.time()
        raised = finished(process)
        assert message["type"] == "alert"
        assert message["alert"]["id"] == raised["id"] and message["alert"]["customerId"] == customer.pk
        assert received - raised["committed"] < 2
        with pytest.raises(TimeoutError):
            theirs.recv(timeout=1)


def test_a_reused_ticket_and_a_foreign_origin_are_refused_by_the_real_server(redis_url, asgi_server, csm):
    from websockets.exceptions import InvalidStatus

    ws_base = asgi_server.replace("http://", "ws://")
    ticket = ticket_for(asgi_server, csm.username)
    with pytest.raises(InvalidStatus) as foreign:
        connect(f"{ws_base}/ws/alerts?ticket={ticket}", origin="https://evil.example")
    assert foreign.value.response.status_code == 403
    # The refused attempt spent the ticket.
    with pytest.raises(InvalidStatus) as after_refusal:
        connect(f"{ws_base}/ws/alerts?ticket={ticket}", origin=asgi_server)
    assert after_refusal.value.response.status_code == 403
    ticket = ticket_for(asgi_server, csm.username)
    with connect(f"{ws_base}/ws/alerts?ticket={ticket}", origin=asgi_server):
        pass
    with pytest.raises(InvalidStatus) as reused:
        connect(f"{ws_base}/ws/alerts?ticket={ticket}", origin=asgi_server)
    assert reused.value.response.status_code == 403


def test_tickets_never_reach_the_server_log(start_process, csm):
    from websockets.exceptions import InvalidStatus

    port = free_port()
    process = start_process(
        [str(VENV_BIN / "uvicorn"), "churnshield.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        service_env(CHURNSHIELD_TEST_JSON_LOGS="1", LOG_LEVEL="INFO"),
        "uvicorn-ticket-logs",
    )
    base = f"http://127.0.0.1:{port}"
    eventually(lambda: _up(base), timeout=30, interval=0.2)
    ws_base = base.replace("http://", "ws://")
    accepted, refused = ticket_for(base, csm.username), ticket_for(base, csm.username)
    with connect(f"{ws_base}/ws/alerts?ticket={accepted}", origin=base):
        pass
    with pytest.raises(InvalidStatus):
        connect(f"{ws_base}/ws/alerts?ticket={refused}", origin="https://evil.example")
    process.terminate()
    process.wait(timeout=10)

    text = (ROOT / ".pytest-logs" / "uvicorn-ticket-logs.log").read_text(errors="replace")
    assert accepted not in text and refused not in text
    handshakes = [json.loads(line)["message"] for line in text.splitlines() if '"WebSocket ' in line]
    assert [line.split(" - ", 1)[1] for line in handshakes] == [
        '"WebSocket /ws/alerts?ticket=[REDACTED]" [accepted]',
        '"WebSocket /ws/alerts?ticket=[REDACTED]" 403',
    ]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CHURNSHIELD_REQUIRE_SERVICES"):
        pytest.fail("/usr/bin/chromium is required in CI (.ci/run installs it)")
    pytest.skip("needs Debian's chromium (apt-get install -y chromium)")


def test_admin_bell_shows_an_alert_raised_by_another_process_within_2_seconds(
    redis_url, asgi_server, csm, make_customer
):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    customer = make_customer(owner=csm, name="Globex")
    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{asgi_server}/admin/login/?next=/admin/")
            page.fill("#id_username", csm.username)
            page.fill("#id_password", "s3cret-pass-123")
            page.click("input[type=submit]")
            page.wait_for_selector("#cs-alert-bell.cs-bell-live", timeout=15_000)  # socket open, resumed
            assert page.is_hidden(".cs-bell-count")

            process = raise_alert_elsewhere(
                redis_url, title="Critical churn risk: Globex", message="Risk rose", customer_id=customer.pk
            )
            page.wait_for_selector(".cs-bell-count:not([hidden])", timeout=30_000)
            shown = time.time()
            raised = finished(process)
            assert shown - raised["committed"] < 2.0, shown - raised["committed"]
            assert page.text_content(".cs-bell-count") == "1"

            page.click(".cs-bell-button")
            item = page.wait_for_selector(f".cs-bell-item[data-alert-id='{raised['id']}'] .cs-bell-link")
            assert "Critical churn risk: Globex" in item.text_content()
            assert item.get_attribute("href") == f"/admin/alerts/alert/{raised['id']}/change/"
        finally:
            browser.close()
