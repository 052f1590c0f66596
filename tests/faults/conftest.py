"""Fixtures for the fault suite: one private PostgreSQL cluster per session (migrated once), a
private Redis per test, and worker processes started in their own process group."""

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.faults.harness import PG_BIN, PrivatePostgres, PrivateRedis, database_env, manage
from tests.live.conftest import ROOT, VENV_BIN


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    if PG_BIN is None:
        if os.environ.get("CHURNSHIELD_REQUIRE_SERVICES"):
            pytest.fail("fault tests need PostgreSQL server binaries (initdb, pg_ctl)")
        pytest.skip("needs PostgreSQL server binaries (initdb, pg_ctl)")
    # Not under pytest's tmp dir: that is private to root, and the cluster runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="churnshield-faults-pg-"))
    base.chmod(0o755)
    pg = PrivatePostgres(base / "cluster")
    pg.init()
    if settings.DATABASE_DIRECT_URL:
        # This run goes through a pooler (tests/conftest.py): so do the product's processes here.
        pg.put_pooler_in_front()
    manage(pg.url, "migrate", "--noinput", "-v0")
    yield pg
    if pg.pooler is not None:
        pg.pooler.stop()
    pg.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def ledger(private_pg):
    from tests.faults.harness import SCHEMA

    private_pg.execute(SCHEMA)
    private_pg.execute("TRUNCATE fault_started, fault_effect, fault_effect_log, monitoring_task_attempts")
    return private_pg


@pytest.fixture
def spawn() -> Iterator:
    """Start a process in its own session (so a whole worker group can be SIGKILLed); stop all at the end."""
    started: list[subprocess.Popen] = []
    (ROOT / ".pytest-logs").mkdir(exist_ok=True)

    def start(args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
        log = open(ROOT / ".pytest-logs" / f"{log_name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.log = log  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        process.log.close()  # type: ignore[attr-defined]


def fault_env(pg: PrivatePostgres, redis: PrivateRedis, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "churnshield.settings.test",
            **database_env(pg.url),
            "FAULT_BROKER_URL": redis.url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def celery_cmd(app: str, *args: str) -> list[str]:
    return [str(VENV_BIN / "celery"), "-A", app, *args]
