"""Webhook steps go through the notifications' SSRF-guarded client: public addresses only, and the
error a caller reads back never tells an open port from a closed one."""

import socket
import sys
import threading

import pytest

from playbooks import steps
from playbooks.models import Playbook, PlaybookExecution
from playbooks.tests.conftest import Receiver
from playbooks.tests.test_engine import start

pytestmark = pytest.mark.django_db

_connects: dict = {"armed": False, "seen": []}
_hook_installed = False


def _audit(event: str, args: tuple) -> None:
    if event != "socket.connect" or not _connects["armed"]:
        return
    address = args[1]
    _connects["seen"].append(address)
    host = address[0] if isinstance(address, tuple) else str(address)
    if not (host.startswith("127.") or host == "::1"):
        # Never let a test send traffic off this machine, whatever the code under test does.
        raise ConnectionRefusedError("test: a connection off loopback was blocked")


@pytest.fixture
def connects():
    """Every socket.connect made while armed (Python's audit hook: no mock of our code)."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    _connects["seen"] = []
    _connects["armed"] = True
    yield _connects["seen"]
    _connects["armed"] = False


class SilentPort:
    """An open TCP port that accepts and hangs up without a word."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(customer, url: str) -> PlaybookExecution:
    # Stored directly: a definition that passed validation while its name resolved elsewhere.
    playbook = Playbook.objects.create(name=f"Hook {url}", steps=[{"key": "hook", "type": "webhook", "url": url}])
    return start(playbook, customer)


@pytest.fixture
def guarded(settings):
    settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = False
    settings.PLAYBOOK_MAX_ATTEMPTS = 1


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:{v4}/hook", "https://127.0.0.1:{v4}/hook", "https://localhost:{v4}/hook",
               "https://[::1]:{v6}/hook", "https://10.0.0.1:{v4}/hook", "https://[::ffff:127.0.0.1]:{v4}/hook"],
)  # fmt: skip
def test_a_webhook_step_to_an_internal_address_is_refused_before_connecting(
    guarded, target, make_customer, manager, api_for, connects, django_capture_on_commit_callbacks
):
    v4, v6 = Receiver(), SilentPort(socket.AF_INET6, "::1")
    port4 = int(v4.url.rsplit(":", 1)[1].split("/")[0])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            execution = _run(make_customer(), target.format(v4=port4, v6=v6.port))
        assert [address for address in connects if address[1] in (port4, v6.port)] == []
        assert v4.deliveries == [] and v6.accepted == 0
    finally:
        v4.close()
        v6.close()
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error == steps.WEBHOOK_REFUSED
    body = api_for(manager).get(f"/api/playbook-executions/{execution.pk}").json()
    assert body["error"] == steps.WEBHOOK_REFUSED


def _api_error(api, execution) -> str:
    body = api.get(f"/api/playbook-executions/{execution.pk}").json()
    timing = {"startedAt", "finishedAt", "durationMs", "nextRunAt"}
    return repr(
        (body["status"], body["error"], [{k: v for k, v in s.items() if k not in timing} for s in body["steps"]])
    )


@pytest.mark.parametrize("allow_loopback", [False, True])
def test_open_and_closed_ports_read_back_the_same_error(
    settings, allow_loopback, make_customer, manager, api_for, connects, django_capture_on_commit_callbacks
):
    settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = allow_loopback  # the test-only allowance: connects
    settings.PLAYBOOK_MAX_ATTEMPTS = 1
    silent = SilentPort()
    api = api_for(manager)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            opened = _run(make_customer(), f"http://127.0.0.1:{silent.port}/hook")
            closed = _run(make_customer(), f"http://127.0.0.1:{closed_port()}/hook")
    finally:
        silent.close()
    assert silent.accepted == (1 if allow_loopback else 0)
    opened.refresh_from_db()
    closed.refresh_from_db()
    assert opened.status == closed.status == "failed"
    assert _api_error(api, opened) == _api_error(api, closed)
    expected = steps.WEBHOOK_FAILED if allow_loopback else steps.WEBHOOK_REFUSED
    assert expected in _api_error(api, opened)


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://[::1]/hook", "https://localhost/hook",
            "https://169.254.169.254/latest", "http://example.com/hook"],
)  # fmt: skip
def test_definitions_refuse_internal_literal_addresses(guarded, csm, api_for, url):
    response = api_for(csm).post("/api/playbooks/validate", {"steps": [{"type": "webhook", "url": url}]}, format="json")
    assert response.status_code == 400
    message = response.json()["errors"]["steps"]["0"]["url"][0]
    assert message == (
        "The webhook URL must be an https:// URL."
        if url.startswith("http:")
        else "The webhook URL must reach a public address."
    )
