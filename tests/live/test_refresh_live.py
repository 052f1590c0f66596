"""Refresh rotation against real servers: several uvicorn worker processes on one port (as in
production), PostgreSQL or SQLite underneath, parallel HTTP requests with one refresh token."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.live.conftest import VENV_BIN, eventually, free_port, service_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_parallel_refreshes_across_worker_processes_have_exactly_one_winner(start_process, make_user):
    user = make_user("csm")
    port = free_port()
    start_process(
        [
            str(VENV_BIN / "uvicorn"),
            "churnshield.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "4",
        ],
        service_env(),
        "uvicorn-refresh-workers",
    )
    base = f"http://127.0.0.1:{port}"
    eventually(lambda: _up(base), timeout=60, interval=0.2)
    for _ in range(3):
        login = httpx.post(
            f"{base}/api/auth/login", json={"username": user.username, "password": "s3cret-pass-123"}, timeout=10
        )
        assert login.status_code == 200
        raw = login.json()["refresh"]
        barrier = threading.Barrier(8)

        def attempt(_: int, raw: str = raw, barrier: threading.Barrier = barrier) -> int:
            with httpx.Client(timeout=30) as client:  # one connection each, so requests spread over workers
                barrier.wait()
                return client.post(f"{base}/api/auth/refresh", json={"refresh": raw}).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = sorted(pool.map(attempt, range(8)))
        assert statuses == [200] + [401] * 7
