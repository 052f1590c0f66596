"""Readiness checks for /readyz (django-health-check's HealthCheck classes, plus ours).

Each check raises ServiceUnavailable with a short, secret-free message when it fails; the view
runs them concurrently (django-health-check's runner) and reports each one's status and timing.
"""

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import connections
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.contrib.celery import Ping
from health_check.contrib.redis import Redis
from health_check.exceptions import ServiceUnavailable
from redis.asyncio import Redis as AsyncRedis

from churnshield.celery import app
from monitoring import selectors


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (publishing would work)."""

    timeout = dt.timedelta(seconds=3)

    def run(self) -> None:
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise ServiceUnavailable(f"broker unreachable ({type(exc).__name__})") from exc


@dataclasses.dataclass
class BeatTick(HealthCheck):
    """The beat that holds the single-beat lock ticked recently."""

    def run(self) -> None:
        try:
            age = selectors.beat_last_tick_age()
        except Exception as exc:
            raise ServiceUnavailable(f"cannot read beat tick ({type(exc).__name__})") from exc
        limit = settings.READYZ_BEAT_MAX_AGE_SECONDS
        if age is None:
            raise ServiceUnavailable("beat has never ticked")
        if age > limit:
            raise ServiceUnavailable(f"beat last ticked {age:.0f}s ago (limit {limit}s)")


DB_CHECK_TIMEOUT = dt.timedelta(seconds=2)  # a down database must not hold the probe for the pool timeout


@dataclasses.dataclass
class FastDatabase(Database):
    timeout = DB_CHECK_TIMEOUT


class _ClosesConnections:
    """Checks run in executor threads: close their DB connections, or they outlive the request."""

    timeout = DB_CHECK_TIMEOUT

    def run(self) -> None:
        try:
            self.check()
        finally:
            connections.close_all()


@dataclasses.dataclass
class ChampionModel(_ClosesConnections, HealthCheck):
    """A champion model exists and its artifact loads (the rules baseline needs no artifact)."""

    def check(self) -> None:
        # Monitoring loads in every process; the prediction stack only when a probe asks for it.
        from predictions.selectors import champion
        from predictions.services.registry import loaded_model

        version = champion()
        if version is None:
            raise ServiceUnavailable("no champion model")
        try:
            loaded_model(version)
        except Exception as exc:
            raise ServiceUnavailable(f"champion {version.version} does not load ({type(exc).__name__})") from exc


@dataclasses.dataclass
class LastBatch(_ClosesConnections, HealthCheck):
    """The last batch scoring run completed recently enough (a missed daily batch = stale scores)."""

    def check(self) -> None:
        from predictions.models import PredictionRun  # as `ChampionModel`: loaded when probed

        finished = (
            PredictionRun.objects.filter(trigger=PredictionRun.Trigger.BATCH, status=PredictionRun.Status.COMPLETED)
            .order_by("-finished_at")
            .values_list("finished_at", flat=True)
            .first()
        )
        limit = dt.timedelta(hours=settings.READYZ_BATCH_MAX_AGE_HOURS)
        if finished is None:
            raise ServiceUnavailable("no batch scoring run has completed")
        if timezone.now() - finished > limit:
            hours = (timezone.now() - finished).total_seconds() / 3600
            raise ServiceUnavailable(f"last batch finished {hours:.1f}h ago (limit {limit.total_seconds() / 3600:g}h)")


def _redis_factory():
    return AsyncRedis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def readiness_checks() -> Iterator[tuple[str, HealthCheck | None]]:
    """(name, check) pairs in report order; a check whose service is not configured yields None."""
    wanted = settings.READYZ_CHECKS
    services = bool(settings.REDIS_URL) and not settings.CELERY_TASK_ALWAYS_EAGER
    available = {
        "database": lambda: FastDatabase(),
        "redis": (lambda: Redis(client_factory=_redis_factory)) if settings.REDIS_URL else None,
        "broker": (lambda: Broker()) if services else None,
        "worker": (lambda: Ping(app=app, timeout=dt.timedelta(seconds=1), limit=1)) if services else None,
        "beat": (lambda: BeatTick()) if services else None,
        "champion_model": lambda: ChampionModel(),
        "last_batch": lambda: LastBatch(),
    }
    for name in wanted:
        factory = available.get(name)
        yield name, factory() if factory else None


def now_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
