"""Test settings: fast hashing, real database from DATABASE_URL (SQLite file by default)."""

import os
from urllib.parse import urlsplit, urlunsplit


def _redis_url_of_this_worker(url: str, worker: str) -> str:
    """Each pytest-xdist worker ("gw0", "gw1", ...) gets a Redis database of its own (broker,
    results, channel layer), as it gets a test database of its own: REDIS_URL's database, then
    the ones below it (wrapping at 0 to 15)."""
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(database - int(worker.removeprefix('gw'))) % 16}"))


# Set in the environment, so the servers and workers the live tests start (which inherit it) use
# the same database; the marker keeps those processes from moving it again.
if (
    os.environ.get("PYTEST_XDIST_WORKER")
    and os.environ.get("REDIS_URL")
    and not os.environ.get("TEST_REDIS_PER_WORKER")
):
    os.environ["REDIS_URL"] = _redis_url_of_this_worker(os.environ["REDIS_URL"], os.environ["PYTEST_XDIST_WORKER"])
    os.environ["TEST_REDIS_PER_WORKER"] = "1"

from .base import *  # noqa: E402, F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_COOKIE_SECURE = False
# In-process tasks, unless a live test starts a server that must hand work to a real worker.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
if os.environ.get("CHURNSHIELD_TEST_JSON_LOGS"):  # processes started by live tests that read their logs
    from monitoring.logs import build_logging

    LOGGING = build_logging(level=os.environ.get("LOG_LEVEL", "INFO"))
# The cache backs throttles only; tests clear it freely, so it never shares Redis with the broker.
CACHES = {**CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not :memory:, so server and worker processes started by tests share it; one per
    # pytest process, so parallel runs do not overwrite each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".pytest-sqlite-{os.getpid()}.sqlite3")}  # noqa: F405

# Transactional tests end with `flush`; this app's flush deletes rather than truncates on
# PostgreSQL (about 1.4 s less per test, see churnshield/testing/management/commands/flush.py).
INSTALLED_APPS = [*INSTALLED_APPS, "churnshield.testing"]  # noqa: F405
