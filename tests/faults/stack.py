"""The whole ingestion stack on private services, for the soak (X6) and the chaos test (X4):
uvicorn serving churnshield.asgi, Celery workers (prefork, one child each, every worker in its
own process group so a SIGKILL takes the machine-lost case), and one locked beat running the real
schedules (the outbox sweeper among them). Plus a WebSocket client of the live alert feed."""

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil

from tests.faults.conftest import celery_cmd
from tests.faults.harness import PrivatePostgres, database_env, manage, wait_until
from tests.live.conftest import VENV_BIN, free_port

# Compressed retry and lease times, so a killed worker's leased events come back within seconds.
FAST_RECOVERY = {
    "WEBHOOK_RETRY_BASE_SECONDS": "1",
    "WEBHOOK_RETRY_MAX_SECONDS": "8",
    "WEBHOOK_LEASE_SECONDS": "20",
    "WEBHOOK_SWEEP_GRACE_SECONDS": "5",
    "BEAT_LOCK_TTL_SECONDS": "10",
}


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    spawn: object
    workers: list[subprocess.Popen] = field(default_factory=list)
    restarts: int = 0

    def start_worker(self, index: int) -> subprocess.Popen:
        process = self.spawn(  # type: ignore[operator]
            celery_cmd(
                "churnshield", "worker", "--pool", "prefork", "--concurrency", "1",
                "-n", f"soak{index}-{self.restarts}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            ),
            self.env,
            f"faults-soak-worker{index}",
        )  # fmt: skip
        self.restarts += 1
        if index < len(self.workers):
            self.workers[index] = process
        else:
            self.workers.append(process)
        return process

    def group_pids(self, index: int) -> list[int]:
        try:
            main = psutil.Process(self.workers[index].pid)
            return [main.pid, *(child.pid for child in main.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def kill_worker(self, index: int) -> None:
        """SIGKILL the worker's whole process group (main process and pool child), by PID."""
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()


def start_stack(spawn, database_url: str, redis_url: str, *, workers: int = 2, **extra: str) -> Stack:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "churnshield.settings.test",
            **database_env(database_url),
            "REDIS_URL": redis_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PYTHONUNBUFFERED": "1",
            "DB_POOL_MIN_SIZE": "1",
            **FAST_RECOVERY,
            **extra,
        }
    )
    manage(database_url, "sync_schedules")
    port = free_port()
    spawn(
        [str(VENV_BIN / "uvicorn"), "churnshield.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--timeout-graceful-shutdown", "5"],
        env,
        "faults-soak-uvicorn",
    )  # fmt: skip
    stack = Stack(base_url=f"http://127.0.0.1:{port}", env=env, spawn=spawn)
    for index in range(workers):
        stack.start_worker(index)
    spawn(
        celery_cmd("churnshield", "beat", "--scheduler", "monitoring.beat:LockedDatabaseScheduler",
                   "--max-interval", "5", "-s", f"/tmp/churnshield-soak-beat-{port}", "--loglevel", "INFO"),
        env,
        "faults-soak-beat",
    )  # fmt: skip

    def up() -> bool:
        try:
            return httpx.get(f"{stack.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=60, interval=0.2)
    return stack


def worker_in_transaction(pg: PrivatePostgres, pids: list[int], pg_port: int) -> bool:
    """True when one of these processes holds a PostgreSQL backend that is not idle: a kill now
    lands inside a drain (its claim or its apply), not between tasks."""
    ports = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == pg_port:
                    ports.add(conn.laddr.port)
        except psutil.Error:
            continue
    if not ports:
        return False
    rows = pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(%s) AND state <> 'idle'", (sorted(ports),)
    )
    return rows[0][0] > 0


def terminate_app_backends(pg: PrivatePostgres) -> int:
    return len(
        pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = 'churnshield' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    )


class AlertFeed(threading.Thread):
    """A manager's WebSocket on /ws/alerts for the whole run: resumes after every reconnect with
    the highest id seen (README "Live alert feed"), and de-duplicates by id as clients must."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.username, self.password = base_url, username, password
        self.ids: set[int] = set()
        self.live_ids: set[int] = set()
        self.connections = 0
        self.errors: list[str] = []
        self.reconnect = threading.Event()
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def ticket(self) -> str:
        with httpx.Client(base_url=self.base_url, timeout=10) as browser:
            signed_in = browser.post("/api/auth/login", json={"username": self.username, "password": self.password})
            signed_in.raise_for_status()
            response = browser.post("/api/alerts/ws-ticket", headers={"Origin": self.base_url})
            response.raise_for_status()
            return response.json()["ticket"]

    def run(self) -> None:
        from websockets.sync.client import connect

        ws_base = self.base_url.replace("http://", "ws://")
        while not self.stopping.is_set():
            try:
                with connect(f"{ws_base}/ws/alerts?ticket={self.ticket()}", origin=self.base_url) as socket:
                    self.connections += 1
                    socket.send(json.dumps({"type": "resume", "lastId": max(self.ids, default=0)}))
                    live = False
                    while not self.stopping.is_set() and not self.reconnect.is_set():
                        try:
                            message = json.loads(socket.recv(timeout=0.5))
                        except TimeoutError:
                            continue
                        if message["type"] == "alert":
                            self.ids.add(message["alert"]["id"])
                            if live:
                                self.live_ids.add(message["alert"]["id"])
                        elif message["type"] == "ready":
                            live = True
                            if message.get("truncated"):
                                break  # resume again from the new highest id
                            self.ready.set()
                    self.reconnect.clear()
            except Exception as error:  # a dropped socket: reconnect and resume, like the bell does
                self.errors.append(f"{type(error).__name__}: {error}")
                time.sleep(0.5)

    def resume_now(self, timeout: float = 30) -> None:
        """Drop the socket and resume; returns once the backlog has been replayed."""
        self.ready.clear()
        self.reconnect.set()
        self.ready.wait(timeout)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
