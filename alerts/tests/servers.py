"""Real local servers speaking the outside protocols: SMTP (aiosmtpd) and an HTTP webhook receiver.

Both listen on a free loopback port, record what arrives and answer from a script, so tests can
make the outside world fail the way it does (SMTP 451, HTTP 500/429/400).
"""

import email
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from tests.live.conftest import free_port


@dataclass
class SmtpServer:
    """Accepts mail into `messages`; `replies` (e.g. "451 4.3.0 Try later") answer the next DATA commands."""

    messages: list[Message] = field(default_factory=list)
    replies: deque = field(default_factory=deque)
    port: int = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.replies:
            return self.replies.popleft()
        message = email.message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


def start_smtp() -> tuple[SmtpServer, Controller]:
    handler = SmtpServer(port=free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    return handler, controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict


class WebhookReceiver:
    """An HTTP server thread on loopback. `script` holds (status, headers) answers for the next
    requests; once empty every request gets 200 "ok". `received` records every request."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.received.append(Received(self.path, dict(self.headers), body))
                status, headers = receiver.script.popleft() if receiver.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                payload = b"ok" if status < 300 else b"error"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
