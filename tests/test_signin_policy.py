"""One sign-in policy for every door that checks a password: `/api/auth/login`, `/signin` and
`/admin/login/` count failures against the account (any spelling of its e-mail address), share
one lock-out and let one attempt at a time through (RELIABILITY S3)."""

import json
from itertools import cycle

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.throttling import ScopedRateThrottle

from churnshield.auth.attempts import single_attempt
from tests.test_auth_hardening import CountingHasher

PASSWORD = "s3cret-pass-123"
DOORS = ["api", "signin", "admin"]
# What each door answers: a sign-in, a wrong password.
SIGNED_IN = {"api": 200, "signin": 303, "admin": 302}
REFUSED = {"api": 401, "signin": 401, "admin": 200}  # the admin shows its form again


@pytest.fixture(autouse=True)
def no_login_throttle(monkeypatch):
    # The per-address throttle is a separate layer (tested on its own); these tests make more
    # attempts a minute than it allows.
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "login", "10000/min")


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["tests.test_auth_hardening.CountingHasher"]
    CountingHasher.calls = 0
    return CountingHasher


def attempt(door: str, identifier: str, password: str, ip: str = "127.0.0.1", **extra):
    client = Client(REMOTE_ADDR=ip, **extra)
    if door == "api":
        body = json.dumps({"username": identifier, "password": password})
        return client.post("/api/auth/login", body, content_type="application/json")
    if door == "signin":
        return client.post("/signin", {"username": identifier, "password": password})
    return client.post("/admin/login/?next=/admin/", {"username": identifier, "password": password, "next": "/admin/"})


def spellings(email: str) -> list[str]:
    local, domain = email.split("@")
    return [
        email,
        email.upper(),
        f"{local.upper()}@{domain}",
        f"{local}@{domain.upper()}",
        f"{local.capitalize()}@{domain}",
        f"{local}@{domain.capitalize()}",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_every_spelling_of_an_email_shares_one_lockout_on_each_door(door, counting_hasher, csm):
    counting_hasher.calls = 0  # creating the user hashed its password
    names = cycle(spellings(csm.email))
    statuses = [attempt(door, next(names), "wrong-password").status_code for _ in range(6 * 9)]
    # Exactly the limit of passwords is checked (the last failure locks and answers 429); every
    # later try is refused before hashing.
    limit = settings.AXES_FAILURE_LIMIT
    assert counting_hasher.calls == limit
    assert statuses == [REFUSED[door]] * (limit - 1) + [429] * (54 - limit + 1)
    # The right password, under any spelling and on any door, is refused while locked.
    for other in DOORS:
        for name in [csm.username, *spellings(csm.email)]:
            locked = attempt(other, name, PASSWORD)
            assert (locked.status_code, locked.json()["code"]) == (429, "locked_out"), (other, name)
    assert counting_hasher.calls == settings.AXES_FAILURE_LIMIT


@pytest.mark.django_db
def test_failures_on_different_doors_add_up(csm):
    names = cycle(spellings(csm.email))
    doors = cycle(DOORS)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        door = next(doors)
        assert attempt(door, next(names), "wrong-password").status_code == REFUSED[door]
    assert attempt(next(doors), next(names), "wrong-password").status_code == 429  # the limit-th locks
    for door in DOORS:
        assert attempt(door, csm.email.upper(), PASSWORD).status_code == 429


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_right_password_signs_in_on_every_door_with_any_spelling(door, csm):
    for name in [csm.username, *spellings(csm.email)]:
        assert attempt(door, name, PASSWORD).status_code == SIGNED_IN[door], name


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_a_concurrent_attempt_is_refused_before_hashing_on_every_door(door, counting_hasher, csm, rf):
    counting_hasher.calls = 0  # creating the user hashed its password
    # Another attempt for the same account and address is being checked (held here, as the
    # first of two racing requests would hold it).
    with single_attempt(rf.post("/", REMOTE_ADDR="127.0.0.1"), csm.username) as alone:
        assert alone
        response = attempt(door, csm.email.upper(), PASSWORD)
    assert (response.status_code, response.json()["code"]) == (429, "attempt_in_progress")
    assert counting_hasher.calls == 0
    assert attempt(door, csm.email.upper(), PASSWORD).status_code == SIGNED_IN[door]


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_usernames_are_case_sensitive_and_count_apart(door, csm):
    # Django compares usernames exactly: another letter case is another (here unknown) account,
    # which can never sign in as this one, so its failures do not lock this one out.
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(door, csm.username.upper(), PASSWORD).status_code == REFUSED[door]
    assert attempt(door, csm.username.upper(), PASSWORD).status_code == 429
    assert attempt(door, csm.username, PASSWORD).status_code == SIGNED_IN[door]
