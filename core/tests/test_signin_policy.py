"""One sign-in policy for every door that checks a password: `/api/auth/login`, `/signin` and
`/admin/login/` count failures against the account (any spelling of its e-mail address), share
one lock-out and let one attempt at a time through (RELIABILITY S3)."""

import json
from itertools import cycle

import pytest
from django.conf import settings
from django.test import Client

from core.auth.attempts import single_attempt
from core.tests.test_auth_hardening import CountingHasher

PASSWORD = "s3cret-pass-123"
DOORS = ["api", "signin", "admin"]
# What each door answers: a sign-in, a wrong password.
SIGNED_IN = {"api": 200, "signin": 303, "admin": 302}
REFUSED = {"api": 401, "signin": 401, "admin": 200}  # the admin shows its form again


def login_rate(settings, rate: str) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": rate}}


@pytest.fixture(autouse=True)
def no_login_throttle(settings):
    # The per-address throttle is a separate layer (tests below set their own rate); the others
    # make more attempts a minute than it allows.
    login_rate(settings, "10000/min")


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["core.tests.test_auth_hardening.CountingHasher"]
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


# --- The client address: trusted proxies only -------------------------------------------------


def throttled_codes(responses) -> list[str]:
    return [r.json()["code"] if r.status_code == 429 else str(r.status_code) for r in responses]


@pytest.mark.django_db
def test_a_forged_forwarded_for_does_not_escape_the_login_throttle(settings):
    login_rate(settings, "5/min")
    # No proxy trusted (the default): the header is the client's own text and is ignored. Each
    # try names another (unknown) account, so only the throttle can refuse.
    responses = [
        attempt("api", f"nobody-{n}", "wrong-password", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}") for n in range(30)
    ]
    assert throttled_codes(responses) == ["401"] * 5 + ["throttled"] * 25


@pytest.mark.django_db
def test_behind_one_trusted_proxy_the_address_it_saw_is_the_client(settings, csm):
    from axes.models import AccessAttempt

    login_rate(settings, "5/min")
    settings.TRUSTED_PROXY_COUNT = 1
    # The proxy appends the address it saw; whatever the client put before it is ignored.
    forged = [
        attempt("api", f"nobody-{n}", "x", ip="10.0.0.2", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.7")
        for n in range(8)
    ]
    assert throttled_codes(forged) == ["401"] * 5 + ["throttled"] * 3
    other_client = attempt("api", "nobody", "x", ip="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.8")
    assert other_client.status_code == 401
    # axes counts under the same address.
    assert sorted(AccessAttempt.objects.values_list("ip_address", flat=True).distinct()) == [
        "203.0.113.7",
        "203.0.113.8",
    ]


@pytest.mark.django_db
def test_the_attempt_lock_follows_the_trusted_address(settings, csm, rf):
    settings.TRUSTED_PROXY_COUNT = 1
    held = rf.post("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.7")
    with single_attempt(held, csm.username) as alone:
        assert alone
        same_client = attempt("api", csm.email, PASSWORD, ip="10.0.0.3", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")
        other_client = attempt("api", csm.email, PASSWORD, ip="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert (same_client.status_code, same_client.json()["code"]) == (429, "attempt_in_progress")
    assert other_client.status_code == 200


# --- A Redis outage -----------------------------------------------------------------------------


@pytest.fixture
def dead_redis(settings):
    """The default cache is a real Redis client pointed at a port nobody listens on."""
    from tests.live.conftest import free_port

    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        },
    }
    from django.core.cache import cache

    with pytest.raises(Exception, match=r"Connection refused|Error 111"):
        cache.get("anything")  # it really is down


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_sign_in_works_while_redis_is_down(door, dead_redis, csm):
    for name in [csm.username, *spellings(csm.email)]:
        assert attempt(door, name, PASSWORD).status_code == SIGNED_IN[door], name


@pytest.mark.django_db
def test_while_redis_is_down_the_login_throttle_counts_in_the_database(settings, dead_redis):
    from django.db import connection

    login_rate(settings, "5/min")
    responses = [attempt("api", f"nobody-{n}", "wrong-password") for n in range(8)]
    assert throttled_codes(responses) == ["401"] * 5 + ["throttled"] * 3
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM churnshield_signin_cache")
        assert cursor.fetchone() == (1,)  # the throttle's history for 127.0.0.1 (the lock was released)


@pytest.mark.django_db
def test_while_redis_is_down_one_attempt_at_a_time_still_holds(dead_redis, csm, rf):
    with single_attempt(rf.post("/", REMOTE_ADDR="127.0.0.1"), csm.username) as alone:
        assert alone
        response = attempt("api", csm.email, PASSWORD)
    assert (response.status_code, response.json()["code"]) == (429, "attempt_in_progress")


@pytest.mark.django_db
def test_ws_ticket_while_redis_is_down_is_a_clear_503(dead_redis, csm, api_for):
    response = api_for(csm).post("/api/alerts/ws-ticket")
    assert response.status_code == 503
    assert response.json() == {
        "message": "The live alert feed is unavailable right now. Try again shortly.",
        "code": "service_unavailable",
        "errors": {},
    }


@pytest.mark.django_db
def test_when_redis_dies_mid_way_the_throttle_goes_on_counting_in_the_database(settings, tmp_path):
    from django.db import connection

    from tests.faults.harness import PrivateRedis

    redis_server = PrivateRedis(tmp_path / "redis")
    redis_server.start()
    try:
        settings.CACHES = {
            **settings.CACHES,
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_server.url,
                "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
            },
        }
        login_rate(settings, "5/min")
        before = [attempt("api", f"nobody-{n}", "wrong-password") for n in range(3)]
        assert redis_server.client().keys("*throttle_login_127.0.0.1") != []  # counted in Redis
        redis_server.kill()
        after = [attempt("api", f"nobody-{n}", "wrong-password") for n in range(3, 10)]
    finally:
        redis_server.kill()
    # Redis's 3 are lost with it; the database count starts at the outage and holds the limit.
    assert throttled_codes(before) == ["401"] * 3
    assert throttled_codes(after) == ["401"] * 5 + ["throttled"] * 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM churnshield_signin_cache")
        assert cursor.fetchone() == (1,)
