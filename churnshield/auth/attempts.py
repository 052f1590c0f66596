"""Sign-in attempts, made countable: one spelling per account and one attempt at a time.

django-axes locks a (username, address) pair after AXES_FAILURE_LIMIT failures, but it checks the
lock before the password is hashed and records the failure after, so parallel attempts all pass
the check (50 at once hashed 18 passwords with a limit of 10). Holding a short cache lock per
pair around the attempt serialises them: each failure is recorded before the next check, and a
concurrent attempt is refused before any hashing. A legitimate client never races itself.
Axes also keys by the name as typed, so `Ann@Example.com` and `ann@example.com` would count
apart; `canonical_username` maps an e-mail address to its account's username first.
"""

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)
# Longer than any single attempt (a hash and a few queries); only a crashed process leaves it set.
ATTEMPT_LOCK_SECONDS = 30


def canonical_username(raw: str) -> str:
    """The account's username for an e-mail address (case-insensitive), else the name as typed."""
    if "@" in raw:
        match = get_user_model().objects.filter(email__iexact=raw).order_by("pk").values_list("username", flat=True)
        found = match.first()
        return found if found is not None else raw.lower()
    return raw


@contextmanager
def single_attempt(request: HttpRequest, username: str) -> Iterator[bool]:
    """Yield True if this is the only attempt in flight for (username, address), else False.

    If the cache is unreachable the attempt goes ahead (yields True): axes still counts every
    failure in the database, so only the race protection is lost, not sign-in itself.
    """
    address = request.META.get("REMOTE_ADDR", "")
    key = "auth:attempt:" + hashlib.sha256(f"{username}\0{address}".encode()).hexdigest()
    try:
        acquired = cache.add(key, 1, timeout=ATTEMPT_LOCK_SECONDS)
    except Exception:
        logger.exception("sign-in attempt lock unavailable; relying on the lock-out alone")
        yield True
        return
    try:
        yield acquired
    finally:
        if acquired:
            try:
                cache.delete(key)
            except Exception:
                logger.exception("could not release a sign-in attempt lock (it expires by itself)")
