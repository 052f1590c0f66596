"""Sign-in attempts, made countable: one spelling per account and one attempt at a time.

Every door that checks a password (`/api/auth/login`, `/signin`, `/admin/login/`) goes through
`authenticate_once`, so they share one policy:

- django-axes locks a (username, address) pair after AXES_FAILURE_LIMIT failures. It keys by the
  name it is given, and the backend accepts an e-mail address in any letter case, so every
  spelling of an address would get its own count. `canonical_username` maps an address to its
  account's username before anything counts, and `axes_username` (AXES_USERNAME_CALLABLE) does the
  same for whatever axes records, so a door that forgot the mapping would still share the count.
- axes checks the lock before the password is hashed and records the failure after, so parallel
  attempts all pass the check (50 at once hashed 18 passwords with a limit of 10). A short lock
  per pair around the attempt serialises them: each failure is recorded before the next check,
  and a concurrent attempt is refused before any hashing. A legitimate client never races itself.
"""

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import caches
from django.http import HttpRequest

from core.auth.addresses import client_ip

logger = logging.getLogger(__name__)
# Longer than any single attempt (a hash and a few queries); only a crashed process leaves it set.
ATTEMPT_LOCK_SECONDS = 30


class AttemptInProgress(Exception):
    """Another sign-in for the same (account, address) is being checked right now."""


def canonical_username(raw: str) -> str:
    """The account's username for an e-mail address (case-insensitive), else the name as typed.

    Usernames stay case-sensitive (as Django compares them): `Ann` can never sign in as `ann`, so
    guesses against it need no share of `ann`'s count.
    """
    if "@" in raw:
        match = get_user_model().objects.filter(email__iexact=raw).order_by("pk").values_list("username", flat=True)
        found = match.first()
        return found if found is not None else raw.lower()
    return raw


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the canonical username of whatever name reached authenticate()."""
    field = settings.AXES_USERNAME_FORM_FIELD
    raw = credentials.get(field) if credentials else getattr(request, "data", request.POST).get(field)
    return canonical_username(raw) if isinstance(raw, str) and raw else raw


@contextmanager
def single_attempt(request: HttpRequest, username: str) -> Iterator[bool]:
    """Yield True if this is the only attempt in flight for (username, address), else False.

    The lock lives in the `signin` cache (Redis, or the database while Redis is unreachable). If
    even that fails the attempt goes ahead (yields True): axes still counts every failure in the
    database, so only the race protection is lost, not sign-in itself.
    """
    cache = caches["signin"]
    key = "auth:attempt:" + hashlib.sha256(f"{username}\0{client_ip(request)}".encode()).hexdigest()
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


def authenticate_once(request: HttpRequest, *, identifier: str, password: str) -> AbstractBaseUser | None:
    """The one way a door checks a password: canonical account, one attempt at a time, axes' lock-out.

    Returns the user, or None (wrong credentials, or locked out: then `request.axes_locked_out` is
    set and AxesMiddleware answers 429). Raises AttemptInProgress before any hashing when another
    attempt for the same account and address is being checked.
    """
    username = canonical_username(identifier)
    with single_attempt(request, username) as alone:
        if not alone:
            raise AttemptInProgress
        return authenticate(request, username=username, password=password)
