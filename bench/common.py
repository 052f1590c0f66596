"""What every benchmark needs: a seeded PostgreSQL database of its own, and manage.py against it."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class BenchDatabase:
    """A PostgreSQL database holding exactly `customers` demo customers, seeded once and reused."""

    def __init__(self, url: str, customers: int, activity_scale: float) -> None:
        self.url, self.customers, self.activity_scale = url, customers, activity_scale
        self.env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "bench.settings", "REDIS_URL": ""}

    def manage(self, *args: str) -> str:
        """Run `manage.py` with the bench settings; exit with its output when it fails."""
        result = subprocess.run(
            [str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if result.returncode:
            sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def psql(self, sql: str, *, admin: bool = False) -> str:
        """One statement through psql (autocommit, so VACUUM and CREATE DATABASE work)."""
        url = self.url.rsplit("/", 1)[0] + "/postgres" if admin else self.url
        return subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True, check=True).stdout.strip()

    def prepare(self) -> None:
        """Reuse the database when it holds the right book; otherwise rebuild and seed it."""
        name = self.url.rsplit("/", 1)[1]
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname='{name}'", admin=True) == "1":
            self.manage("migrate", "--noinput")
            count = self.manage("shell", "-c", "from customers.models import Customer; print(Customer.objects.count())")
            if int(count.split()[-1]) == self.customers:
                return
            self.psql(f"DROP DATABASE {name}", admin=True)
        self.psql(f"CREATE DATABASE {name}", admin=True)
        self.manage("migrate", "--noinput")
        print(f"seeding {self.customers:,} customers (once; later runs reuse them)...", flush=True)
        started = time.perf_counter()
        self.manage(
            "seed_demo", "--customers", str(self.customers), "--seed", "1", "--activity-scale", str(self.activity_scale)
        )
        self.psql("VACUUM ANALYZE")
        print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
