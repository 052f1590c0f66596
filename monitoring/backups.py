"""Backups and restores of the default database: pg_dump/pg_restore on PostgreSQL, SQLite's own
backup API in the embedded topology (the files `monitoring.selectors.backups` lists)."""

import datetime as dt
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import environ
from django.conf import settings
from django.db import connection, connections

from monitoring.selectors import backup_dir, backups

logger = logging.getLogger("churnshield.maintenance")


def _pg_tool(name: str) -> str:
    """The pg_dump/pg_restore matching the server's major version (an older client refuses newer servers)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        major = int(cursor.fetchone()[0]) // 10000
    candidates = [f"/usr/lib/postgresql/{major}/bin/{name}", shutil.which(name)]
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            version = [candidate, "--version"]
            out = subprocess.run(version, capture_output=True, text=True, check=True).stdout  # noqa: S603
            found = re.search(r"(\d+)(?:\.\d+)?", out)
            if found and int(found.group(1)) >= major:
                return candidate
    raise RuntimeError(f"no {name} of version >= {major} found (install postgresql-client-{major})")


LIBPQ_TLS_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY"}


def _pg_database() -> dict[str, Any]:
    """Where pg_dump and pg_restore connect: DATABASE_DIRECT_URL when set, since they need a
    session of their own (they `SET` parameters and hold one snapshot), which a transaction-mode
    pooler cannot give; otherwise the default database."""
    if settings.DATABASE_DIRECT_URL:
        return environ.Env.db_url_config(settings.DATABASE_DIRECT_URL)
    return settings.DATABASES["default"]


def _pg_env() -> dict[str, str]:
    """libpq environment for the database: the password never appears on a command line."""
    db = _pg_database()
    env = dict(os.environ)
    env.update(
        {
            "PGHOST": str(db.get("HOST") or "127.0.0.1"),
            "PGPORT": str(db.get("PORT") or 5432),
            "PGUSER": str(db.get("USER") or ""),
            "PGDATABASE": str(db["NAME"]),
        }
    )
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    # The URL's TLS settings (`?sslmode=require`, certificates) hold for pg_dump and pg_restore too.
    for option, variable in LIBPQ_TLS_ENV.items():
        if db.get("OPTIONS", {}).get(option):
            env[variable] = str(db["OPTIONS"][option])
    return env


def backup_create(*, directory: Path | None = None, keep: int | None = None) -> Path:
    """Back up the default database into `directory` (atomic rename), then keep the newest `keep`."""
    directory = Path(directory or backup_dir())
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(tz=dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if connection.vendor == "postgresql":
        target = directory / f"churnshield-{stamp}.dump"
        partial = target.with_suffix(".partial")
        subprocess.run(  # noqa: S603 (fixed argument list, no shell)
            [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}"],
            env=_pg_env(),
            check=True,
            capture_output=True,
        )
    elif connection.vendor == "sqlite":
        target = directory / f"churnshield-{stamp}.sqlite3"
        partial = target.with_suffix(".partial")
        source = sqlite3.connect(settings.DATABASES["default"]["NAME"])
        dest = sqlite3.connect(partial)
        try:
            source.backup(dest)  # a consistent copy even while other connections write
        finally:
            dest.close()
            source.close()
    else:
        raise RuntimeError(f"backups are not supported on {connection.vendor}")
    partial.rename(target)
    backup_rotate(directory=directory, keep=keep if keep is not None else settings.BACKUP_KEEP)
    logger.info("backup written to %s (%s bytes)", target, target.stat().st_size)
    return target


def backup_rotate(*, directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups (and stale partial files); returns what was removed."""
    removed = []
    for old in [p for p in backups() if p.parent == directory][max(keep, 1) :]:
        old.unlink()
        removed.append(old)
    for partial in directory.glob("churnshield-*.partial"):
        if dt.datetime.now(tz=dt.UTC).timestamp() - partial.stat().st_mtime > 86400:
            partial.unlink()
    return removed


def backup_restore(*, path: Path) -> None:
    """Replace the default database's contents with the backup at `path`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    vendor = connection.vendor
    connections.close_all()
    if vendor == "postgresql":
        if path.suffix != ".dump":
            raise ValueError("a PostgreSQL restore needs a .dump (pg_dump custom format) file")
        subprocess.run(  # noqa: S603 (fixed argument list, no shell)
            [
                _pg_tool("pg_restore"),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={_pg_database()['NAME']}",
                str(path),
            ],
            env=_pg_env(),
            check=True,
            capture_output=True,
        )
    elif vendor == "sqlite":
        if path.suffix != ".sqlite3":
            raise ValueError("a SQLite restore needs a .sqlite3 backup file")
        source = sqlite3.connect(path)
        dest = sqlite3.connect(settings.DATABASES["default"]["NAME"])
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
    else:
        raise RuntimeError(f"restores are not supported on {vendor}")
    logger.info("database restored from %s", path)
