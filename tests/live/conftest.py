"""Harness for tests that run real processes: an ASGI server, a Celery worker.

Processes get the test database's URL, are started on free loopback ports and are stopped by
PID. Tests that need Redis skip with a printed reason when REDIS_URL is not set, except in CI
(CHURNSHIELD_REQUIRE_SERVICES=1), where a missing service is a failure.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import environ
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def eventually(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def free_port() -> int:
    """A free loopback port: the first free one of CHURNSHIELD_LIVE_PORTS ("8120-8129") when set (a
    machine shared by several test runs gives each its own range), else any the system picks."""
    low, _, high = os.environ.get("CHURNSHIELD_LIVE_PORTS", "").partition("-")
    candidates = range(int(low), int(high or low) + 1) if low else [0]
    for candidate in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in CHURNSHIELD_LIVE_PORTS={os.environ['CHURNSHIELD_LIVE_PORTS']}")


def test_database_url() -> str:
    return _url_of(connection.settings_dict)


def direct_test_database_url() -> str:
    """The test database over DATABASE_DIRECT_URL (PostgreSQL itself) when DATABASE_URL is a pooler's."""
    direct = environ.Env.db_url_config(settings.DATABASE_DIRECT_URL)
    return _url_of({**direct, "NAME": connection.settings_dict["NAME"]})


def postgres_address() -> tuple[str, int]:
    """PostgreSQL itself (host, port), for a private pooler to front: not the run's own pooler."""
    settings_dict = environ.Env.db_url_config(settings.DATABASE_DIRECT_URL) if settings.DATABASE_DIRECT_URL else {}
    settings_dict = settings_dict or connection.settings_dict
    return settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432)


def _url_of(settings_dict: dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = f":{quote(settings_dict['PASSWORD'])}" if settings_dict.get("PASSWORD") else ""
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


_pooler = None


def live_pooler():
    """With CHURNSHIELD_LIVE_POOLER=1, the processes live tests start reach the test database
    through one private PgBouncer in transaction mode (tests/live/pooler.py), as behind Neon's or
    Supabase's pooled URL; the tests' own connection stays direct."""
    global _pooler
    if _pooler is None:
        import atexit
        import shutil
        import tempfile

        from tests.live.pooler import PgBouncer

        base = Path(tempfile.mkdtemp(prefix="churnshield-live-pooler-"))
        base.chmod(0o755)  # pgbouncer runs as `postgres`
        host, port = postgres_address()
        _pooler = PgBouncer(base / "pgbouncer", server_host=host, server_port=port)
        _pooler.start()
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    return _pooler


@pytest.fixture(scope="session", autouse=True)
def _stop_live_pooler(request):
    """Stop the live pooler before the test database is dropped (its server connections would
    keep the database busy): this fixture depends on the database's, so it is torn down first."""
    if os.environ.get("CHURNSHIELD_LIVE_POOLER"):
        request.getfixturevalue("django_db_setup")
    yield
    if _pooler is not None:
        _pooler.stop()


def service_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "churnshield.settings.test",
            "DATABASE_URL": test_database_url(),
            # The run's own direct URL names the database the test database was made from.
            "DATABASE_DIRECT_URL": "",
            "DATABASE_POOLED": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    on_test_database = connection.vendor == "postgresql" and "DATABASE_URL" not in extra
    if on_test_database and settings.DATABASE_POOLED:
        # The tests run through a pooler (tests/conftest.py): so do the processes, and what they
        # must run on PostgreSQL itself (`manage.py migrate`) reaches the same test database.
        direct = direct_test_database_url() if settings.DATABASE_DIRECT_URL else ""
        env.update(DATABASE_DIRECT_URL=direct, DATABASE_POOLED="true")
    elif on_test_database and os.environ.get("CHURNSHIELD_LIVE_POOLER"):
        env.update(DATABASE_URL=live_pooler().url(connection.settings_dict["NAME"]), DATABASE_POOLED="true")
    env.update(extra)
    return env


@pytest.fixture
def start_process() -> Iterator[Callable[..., subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
        log = open(ROOT / ".pytest-logs" / f"{log_name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        process.log = log  # type: ignore[attr-defined]
        started.append(process)
        return process

    (ROOT / ".pytest-logs").mkdir(exist_ok=True)
    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.log.close()  # type: ignore[attr-defined]


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        if os.environ.get("CHURNSHIELD_REQUIRE_SERVICES"):
            pytest.fail("REDIS_URL is required in CI (CHURNSHIELD_REQUIRE_SERVICES=1)")
        pytest.skip("needs Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379/15) to run it")
    return url


def serve_asgi(start_process: Callable, env: dict[str, str], name: str = "uvicorn") -> str:
    """Start uvicorn serving churnshield.asgi on a free port with `env`; its base URL once it answers."""
    import httpx

    port = free_port()
    start_process(
        [str(VENV_BIN / "uvicorn"), "churnshield.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        name,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/signin", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # A cold start (Django, xgboost, pandas) passes 30 s on a machine busy with other test runs.
    eventually(ready, timeout=90, interval=0.2)
    return base


@pytest.fixture
def asgi_server(start_process) -> Iterator[str]:
    """A real uvicorn serving churnshield.asgi on a free port, over the test database."""
    yield serve_asgi(start_process, service_env())
