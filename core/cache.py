"""A cache that survives a Redis outage by counting in the database instead.

Sign-in keeps two short-lived counters: the login throttle and the one-attempt-at-a-time lock.
They live in Redis (fast, shared by every process), but sign-in must not fail, nor stop counting,
because Redis is down. `FailoverCache` sends each call to the primary cache and, when that cannot
be reached, to the fallback (Django's database cache) for FAILOVER_SECONDS before trying the
primary again, so a dead Redis costs one failed connect per process every few seconds. Counts made
during an outage start from zero in the database: the limits still hold, from that moment on.
"""

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
FAILOVER_SECONDS = 5.0
UNREACHABLE = (RedisError, OSError)

# Per process, by primary cache (alias and location): when to try it again.
_down_until: dict[tuple[str, str], float] = {}
_down_lock = threading.Lock()


class FailoverCache(BaseCache):
    """OPTIONS: PRIMARY and FALLBACK, the aliases of two other caches."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        options = params.get("OPTIONS", {})
        self.primary_alias: str = options["PRIMARY"]
        self.fallback_alias: str = options["FALLBACK"]

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        primary = (self.primary_alias, str(settings.CACHES[self.primary_alias].get("LOCATION", "")))
        if time.monotonic() >= _down_until.get(primary, 0.0):
            try:
                return getattr(caches[self.primary_alias], method)(*args, **kwargs)
            except UNREACHABLE:
                logger.warning("cache %r unreachable; counting in %r", self.primary_alias, self.fallback_alias)
                with _down_lock:
                    _down_until[primary] = time.monotonic() + FAILOVER_SECONDS
        return getattr(caches[self.fallback_alias], method)(*args, **kwargs)

    def add(self, key: str, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        return self._call("add", key, value, timeout=timeout, version=version)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return self._call("get", key, default=default, version=version)

    def set(self, key: str, value: Any, timeout: Any = None, version: int | None = None) -> None:
        self._call("set", key, value, timeout=timeout, version=version)

    def touch(self, key: str, timeout: Any = None, version: int | None = None) -> bool:
        return self._call("touch", key, timeout=timeout, version=version)

    def delete(self, key: str, version: int | None = None) -> bool:
        return self._call("delete", key, version=version)

    def clear(self) -> None:
        self._call("clear")
