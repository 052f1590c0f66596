"""One beat at a time: django-celery-beat's DatabaseScheduler behind a Redis lock.

Two beats would send every periodic task twice. Every beat process runs this scheduler, but only
the one holding `churnshield:beat:lock` (SET NX with a TTL, renewed on every tick) sends tasks;
the others idle and take over within `BEAT_LOCK_TTL_SECONDS` if the holder dies. A standby that
takes over reads last_run_at from the database (DatabaseScheduler reloads when the holder's saves
move the change marker; CELERY_BEAT_SYNC_EVERY=1 makes the holder save after every send), so it
does not re-send what the holder already sent. The holder also
records its last tick, which /readyz and /metrics read.

    celery -A churnshield beat --scheduler monitoring.beat:LockedDatabaseScheduler
"""

import logging
import os
import socket
import time
import uuid

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from monitoring.selectors import BEAT_LOCK_KEY, BEAT_TICK_KEY, redis_client

logger = logging.getLogger("churnshield.beat")

# Extend only if we still hold it (compare-and-set): a beat that paused past the TTL must not
# steal the lock back from the beat that took over.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LockedDatabaseScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs) -> None:
        self._token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leader = False
        self._redis = redis_client() if settings.REDIS_URL else None
        super().__init__(*args, **kwargs)

    @property
    def lock_ttl_ms(self) -> int:
        return int(settings.BEAT_LOCK_TTL_SECONDS * 1000)

    def _hold_lock(self) -> bool:
        if self._redis is None:
            return True  # embedded topology: one process, nothing to coordinate
        try:
            if self._leader and self._redis.eval(_RENEW, 1, BEAT_LOCK_KEY, self._token, self.lock_ttl_ms):
                return True
            acquired = bool(self._redis.set(BEAT_LOCK_KEY, self._token, nx=True, px=self.lock_ttl_ms))
        except Exception:
            logger.warning("beat lock: Redis unreachable; not sending tasks", exc_info=True)
            acquired = False
        if acquired != self._leader:
            logger.info("beat %s %s the lock", self._token, "acquired" if acquired else "lost")
        self._leader = acquired
        return acquired

    def tick(self, *args, **kwargs) -> float:
        if not self._hold_lock():
            # Standby: check again well before the holder's lock would expire.
            return min(self.max_interval, settings.BEAT_LOCK_TTL_SECONDS / 3)
        try:
            self._redis and self._redis.set(BEAT_TICK_KEY, f"{time.time():.3f}", ex=86400)
        except Exception:
            logger.warning("beat: cannot record tick", exc_info=True)
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        try:
            if self._redis is not None and self._leader:
                self._redis.eval(_RELEASE, 1, BEAT_LOCK_KEY, self._token)
        except Exception:
            logger.warning("beat: cannot release the lock", exc_info=True)
        super().close()
