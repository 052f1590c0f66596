"""Reads for health checks and metrics: Redis (broker queues, beat's tick) and backup files."""

import time
from pathlib import Path
from typing import Any

import redis
from django.conf import settings

BEAT_TICK_KEY = "churnshield:beat:last_tick"
BEAT_LOCK_KEY = "churnshield:beat:lock"
# kombu's Redis transport keeps priorities in sibling lists named <queue>\x06\x16<priority>.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = ("", "3", "6", "9")


def redis_client(url: str | None = None) -> redis.Redis:
    """A client with short timeouts: a health check or a scrape must never hang on Redis."""
    return redis.Redis.from_url(
        url or settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
    )


def broker_is_redis() -> bool:
    return str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://"))


def celery_queue_names() -> list[str]:
    names = {getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")}
    for route in (getattr(settings, "CELERY_TASK_ROUTES", None) or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    names.update(getattr(settings, "CELERY_WORKER_QUEUES", []))  # includes PLAYBOOK_DUE_QUEUE when set
    names.update(getattr(settings, "MONITORING_EXTRA_QUEUES", []))
    return sorted(names)


def celery_queue_stats() -> dict[str, Any]:
    """Waiting messages per queue and delivered-but-unacked messages (Redis broker only)."""
    if not broker_is_redis():
        return {"queues": {}, "unacked": 0}
    client = redis_client(settings.CELERY_BROKER_URL)
    names = celery_queue_names()
    pipe = client.pipeline(transaction=False)
    for name in names:
        for step in _PRIORITY_STEPS:
            pipe.llen(name + (_PRIORITY_SEP + step if step else ""))
    pipe.hlen("unacked")
    values = pipe.execute()
    per_queue = len(_PRIORITY_STEPS)
    queues = {name: sum(values[i * per_queue : (i + 1) * per_queue]) for i, name in enumerate(names)}
    return {"queues": queues, "unacked": values[-1]}


def beat_last_tick() -> float | None:
    """Unix time of the last tick of the beat that holds the lock (written by LockedScheduler)."""
    if not settings.REDIS_URL:
        return None
    value = redis_client().get(BEAT_TICK_KEY)
    return float(value) if value else None


def beat_last_tick_age() -> float | None:
    tick = beat_last_tick()
    return None if tick is None else max(0.0, time.time() - tick)


def backup_dir() -> Path:
    return Path(settings.BACKUP_DIR)


def backups() -> list[Path]:
    """Backup files, newest first (names embed a UTC timestamp, so name order is time order)."""
    directory = backup_dir()
    if not directory.is_dir():
        return []
    return sorted(
        (p for p in directory.glob("churnshield-*") if p.is_file() and p.suffix in (".dump", ".sqlite3")),
        key=lambda p: p.name,
        reverse=True,
    )


def latest_backup() -> dict[str, Any] | None:
    files = backups()
    if not files:
        return None
    stat = files[0].stat()
    return {"path": str(files[0]), "size": stat.st_size, "age_seconds": max(0.0, time.time() - stat.st_mtime)}
