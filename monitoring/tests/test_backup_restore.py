"""backup_db → wipe → restore_db gives back every row of every table (row counts and checksums).

Runs against a scratch database of its own (a new PostgreSQL database on the same server, or a
SQLite file), migrated and seeded by the real management commands, so the test database other
tests use is never touched.
"""

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def manage(database_url: str, *args: str, backup_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "churnshield.settings.test",
            "DATABASE_URL": database_url,
            "BACKUP_DIR": str(backup_dir),
        }
    )
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


class Postgres:
    def __init__(self) -> None:
        s = connection.settings_dict
        self.params = {
            "host": s.get("HOST") or "127.0.0.1",
            "port": s.get("PORT") or 5432,
            "user": s.get("USER") or "postgres",
            "password": s.get("PASSWORD") or None,
        }
        self.name = f"{s['NAME']}_backup_{os.getpid()}"[:63]
        password = f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else ""
        self.url = (
            f"postgres://{quote(self.params['user'])}{password}@{self.params['host']}:{self.params['port']}/{self.name}"
        )

    def admin(self, sql: str) -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **self.params) as conn:
            conn.execute(sql)

    def create(self) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{self.name}"')
        self.admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def fingerprint(self) -> dict[str, tuple]:
        with psycopg.connect(dbname=self.name, **self.params) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema='public' AND table_type='BASE TABLE' ORDER BY 1"
                )
            ]
            result = {}
            for table in tables:
                digest = "coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '')"
                count, digest = conn.execute(f'SELECT count(*), {digest} FROM "{table}" t').fetchone()
                result[table] = (count, digest)
            for (sequence,) in conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname='public'"
            ).fetchall():
                result[f"seq:{sequence}"] = conn.execute(f'SELECT last_value, is_called FROM "{sequence}"').fetchone()
            return result

    def wipe(self) -> None:
        with psycopg.connect(dbname=self.name, autocommit=True, **self.params) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")


class Sqlite:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "scratch.sqlite3"
        self.url = f"sqlite:///{self.path}"

    def create(self) -> None:
        pass

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def fingerprint(self) -> dict[str, tuple]:
        conn = sqlite3.connect(self.path)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1")]
            result = {}
            for table in tables:
                rows = sorted(repr(row) for row in conn.execute(f'SELECT * FROM "{table}"'))
                result[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
            return result
        finally:
            conn.close()

    def wipe(self) -> None:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("PRAGMA foreign_keys=OFF")
            for (table,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall():
                conn.execute(f'DROP TABLE "{table}"')
            conn.commit()
        finally:
            conn.close()


@pytest.fixture
def scratch(tmp_path):
    database = Postgres() if connection.vendor == "postgresql" else Sqlite(tmp_path)
    database.create()
    yield database
    database.drop()


def test_backup_wipe_restore_gives_back_every_table(scratch, tmp_path):
    backup_dir = tmp_path / "backups"
    manage(scratch.url, "migrate", "--noinput", "-v0", backup_dir=backup_dir)
    manage(scratch.url, "seed_demo", "--customers", "40", "--seed", "3", backup_dir=backup_dir)
    before = scratch.fingerprint()
    assert before["customers"][0] == 40 and before["user_sessions"][0] > 1000
    assert sum(count for key, (count, *_) in before.items() if not key.startswith("seq:")) > 5000

    out = manage(scratch.url, "backup_db", backup_dir=backup_dir).stdout.strip()
    backup = Path(out)
    assert backup.parent == backup_dir and backup.stat().st_size > 0
    assert backup.suffix == (".dump" if connection.vendor == "postgresql" else ".sqlite3")

    scratch.wipe()
    assert "customers" not in scratch.fingerprint()

    manage(scratch.url, "restore_db", "--latest", "--noinput", backup_dir=backup_dir)
    after = scratch.fingerprint()
    assert after == before


def test_backups_rotate_to_the_newest_n(scratch, tmp_path):
    backup_dir = tmp_path / "backups"
    manage(scratch.url, "migrate", "--noinput", "-v0", "auth", backup_dir=backup_dir)
    made = [
        Path(manage(scratch.url, "backup_db", "--keep", "2", backup_dir=backup_dir).stdout.strip()) for _ in range(4)
    ]
    kept = sorted(p.name for p in backup_dir.iterdir())
    assert kept == sorted(p.name for p in made[-2:])


def test_pg_dump_and_pg_restore_reach_the_direct_url_with_its_tls_settings(settings):
    """Behind a pooler, pg_dump/pg_restore connect to DATABASE_DIRECT_URL, with the URL's TLS options."""
    from monitoring.backups import _pg_env

    settings.DATABASE_DIRECT_URL = (
        "postgres://owner:s%40fe@db.example.com:5432/prod?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"
    )
    expected = {
        "PGHOST": "db.example.com",
        "PGPORT": "5432",
        "PGUSER": "owner",
        "PGPASSWORD": "s@fe",
        "PGDATABASE": "prod",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/ssl/ca.pem",
    }
    env = _pg_env()
    assert {key: env.get(key) for key in expected} == expected
