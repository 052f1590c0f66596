"""Fixtures for playbook tests: a playbook factory, a real HTTP receiver on loopback, a controlled clock."""

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db.models import F

from playbooks.approvals import trigger_rule_approve
from playbooks.models import PlaybookExecution, PlaybookStepRun
from playbooks.services import playbook_upsert


@pytest.fixture
def make_playbook(db, settings):
    settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = True
    counter = iter(range(1, 10_000))

    def make(steps, name=None, **fields):
        data = {"steps": steps, **fields}
        return playbook_upsert(name=name or f"Playbook {next(counter)}", data=data)[0]

    return make


@pytest.fixture
def go_ahead(manager):
    """A manager's go-ahead for rules (without it no rule enrols anyone by itself)."""

    def approve(*rules):
        return [trigger_rule_approve(user=manager, rule_id=rule.pk) for rule in rules]

    return approve


class Receiver:
    """A local webhook receiver: records each delivery; answers with the queued statuses, then 200."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self.statuses: list[int] = []
        self.block = threading.Event()
        self.block.set()
        self.entered = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append({"headers": dict(self.headers), "body": body})
                receiver.entered.set()
                receiver.block.wait(60)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"ok": status < 300}).encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.block.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def elapse(delta: dt.timedelta) -> None:
    """Let `delta` pass for the playbook engine: a controlled clock for code that reads the DATABASE's clock.

    The engine compares due times and leases with the database's `now()` (RELIABILITY X5), which no
    test can move, so the test moves every stored playbook time back by `delta` instead: the same
    arithmetic the engine would see had `delta` passed (started, due and lease times, wait deadlines)."""
    PlaybookExecution.objects.update(
        started_at=F("started_at") - delta, next_run_at=F("next_run_at") - delta, completed_at=F("completed_at") - delta
    )
    PlaybookStepRun.objects.update(
        started_at=F("started_at") - delta, finished_at=F("finished_at") - delta, due_at=F("due_at") - delta
    )
    for run in PlaybookStepRun.objects.filter(step_type="wait"):
        deadline = run.output.get("deadline")
        if deadline:
            moved = dt.datetime.fromisoformat(deadline.replace("Z", "+00:00")) - delta
            run.output["deadline"] = moved.isoformat().replace("+00:00", "Z")
            run.save(update_fields=["output"])
