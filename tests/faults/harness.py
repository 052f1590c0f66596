"""Private services for fault tests: a redis-server and a PostgreSQL cluster of their own, on free
loopback ports in temp dirs, which the tests kill and restart. The machine's shared PostgreSQL
and Redis are never touched.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis

from tests.live.conftest import ROOT, eventually, free_port

PG_BIN = next(
    (p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True) if (p / "initdb").exists()),
    None,
)


# The effect ledger (see fault_app.py): what started, what took effect, how often.
SCHEMA = """
CREATE TABLE IF NOT EXISTS fault_started (event_id text NOT NULL, pid int NOT NULL, ts timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS fault_effect (event_id text PRIMARY KEY, pid int NOT NULL, ts timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS fault_effect_log (event_id text NOT NULL, pid int NOT NULL, ts timestamptz DEFAULT now());
"""


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivateRedis:
    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.dir = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--maxmemory-policy", "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        eventually(lambda: _pings(client), timeout=10)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


# Private poolers' URLs, each with the PostgreSQL it fronts (see database_env).
_DIRECT_URL_BEHIND: dict[str, str] = {}


def database_env(database_url: str) -> dict[str, str]:
    """The database variables of a process given this URL. Behind a private pooler it also gets
    PostgreSQL itself as DATABASE_DIRECT_URL (`manage.py migrate` runs there), as in production;
    a direct URL never inherits the test run's own DATABASE_DIRECT_URL, which names another database."""
    if direct := _DIRECT_URL_BEHIND.get(database_url):
        return {"DATABASE_URL": database_url, "DATABASE_DIRECT_URL": direct, "DATABASE_POOLED": "true"}
    return {"DATABASE_URL": database_url, "DATABASE_DIRECT_URL": "", "DATABASE_POOLED": ""}


class PrivatePostgres:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()
        self.direct_url = f"postgres://postgres@127.0.0.1:{self.port}/churnshield"
        # What the product's processes connect to: PostgreSQL, or a pooler in front of it.
        self.url = self.direct_url
        self.pooler = None

    def put_pooler_in_front(self) -> None:
        """Route the product's processes through a private PgBouncer in transaction mode; the
        tests' own queries (execute) and backend terminations still go to PostgreSQL itself."""
        from tests.live.pooler import PgBouncer

        self.pooler = PgBouncer(self.dir.parent / "pgbouncer", server_host="127.0.0.1", server_port=self.port)
        self.pooler.start()
        self.url = self.pooler.url("churnshield")
        _DIRECT_URL_BEHIND[self.url] = self.direct_url

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE churnshield")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._pg_ctl("-o", options, "-w", "start")

    def restart(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._pg_ctl("-o", options, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def dsn(self, dbname: str = "churnshield") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} connect_timeout=3"

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def manage(database_url: str, *args: str, **env: str) -> str:
    environment = dict(os.environ)
    environment.update({"DJANGO_SETTINGS_MODULE": "churnshield.settings.test", **database_env(database_url), **env})
    environment.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_until(predicate, timeout: float, interval: float = 0.05):
    return eventually(predicate, timeout=timeout, interval=interval)


def monotonic() -> float:
    return time.monotonic()
