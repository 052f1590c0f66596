"""Fixtures for playbook tests: a playbook factory and a real HTTP receiver on loopback."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from playbooks.services import playbook_upsert


@pytest.fixture
def make_playbook(db, settings):
    settings.PLAYBOOK_WEBHOOK_ALLOW_HTTP = True
    counter = iter(range(1, 10_000))

    def make(steps, name=None, **fields):
        data = {"steps": steps, **fields}
        return playbook_upsert(name=name or f"Playbook {next(counter)}", data=data)[0]

    return make


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
