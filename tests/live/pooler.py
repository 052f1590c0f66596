"""A private PgBouncer in transaction mode (what Neon and Supabase hand out as their pooled URL),
on a free loopback port in a temp dir, in front of a PostgreSQL the tests name. Its own config:
the shared PostgreSQL's is never touched. Debian's `pgbouncer` package (.ci/run installs it)."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg

from tests.faults.harness import _as_postgres
from tests.live.conftest import eventually, free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    def __init__(self, directory: Path, *, server_host: str, server_port: int, user: str = "postgres") -> None:
        self.dir = directory
        self.server_host, self.server_port, self.user = server_host, server_port, user
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, dbname: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname} connect_timeout=3"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            # Few server connections, so a client's next transaction often lands on another one.
            "default_pool_size = 8\nmax_client_conn = 500\n"
            # After a failed server login PgBouncer waits this long before the next (15 s by
            # default): the fault tests bring PostgreSQL back and time how soon the product recovers.
            "server_login_retry = 1\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, "postgres")
        self.process = subprocess.Popen(
            _as_postgres([PGBOUNCER, str(ini)]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        eventually(self._answers, timeout=15, interval=0.1)

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), prepare_threshold=None, autocommit=True) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # runuser forwards the signal to pgbouncer
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""
