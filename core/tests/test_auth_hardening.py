"""Authentication hardening beyond core/tests/test_auth.py (RELIABILITY S3 and X5's unit part): token
expiry at exp ± 1 s with our LEEWAY, the lock-out's cool-off boundaries, the lock-out under 50
parallel attempts (the password hasher, instrumented, runs at most limit + 2 times) and user
enumeration by timing."""

import datetime as dt
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

T0 = dt.datetime(2026, 10, 25, 0, 59, 0, tzinfo=dt.UTC)  # an hour before Berlin leaves summer time


class CountingHasher(PBKDF2PasswordHasher):
    """The real PBKDF2 hasher with fewer iterations (a hash costs milliseconds, so timing is
    dominated by it as in production) that counts every hash it computes."""

    algorithm = "pbkdf2_counting"
    iterations = 20_000
    calls = 0
    _lock = threading.Lock()

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        with CountingHasher._lock:
            CountingHasher.calls += 1
        return super().encode(password, salt, iterations)


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["core.tests.test_auth_hardening.CountingHasher"]
    CountingHasher.calls = 0
    yield CountingHasher


def login(username: str, password: str = "s3cret-pass-123", ip: str = "127.0.0.1"):
    return APIClient(REMOTE_ADDR=ip).post(
        "/api/auth/login", {"username": username, "password": password}, format="json"
    )


# --- JWT expiry at the edge (X5) --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["access", "refresh"])
@pytest.mark.parametrize(("after_exp", "accepted"), [(-1, True), (1, False)])
def test_tokens_expire_at_exp_plus_our_leeway(csm, kind, after_exp, accepted):
    leeway = int(getattr(settings, "SIMPLE_JWT", {}).get("LEEWAY", 0) or 0)
    assert 0 <= leeway <= 30  # RELIABILITY X5: a leeway, if any, stays small
    with time_machine.travel(T0, tick=False):
        token = (AccessToken if kind == "access" else RefreshToken).for_user(csm)
    moment = dt.datetime.fromtimestamp(token["exp"], tz=dt.UTC) + dt.timedelta(seconds=leeway + after_exp)
    with time_machine.travel(moment, tick=False):
        client = APIClient()
        if kind == "access":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            response = client.get("/api/customers")
        else:
            response = client.post("/api/auth/refresh", {"refresh": str(token)}, format="json")
    assert response.status_code == (200 if accepted else 401), response.content


# --- Lock-out: cool-off boundaries (X5) and parallel attempts (S3) -------------------------------


@pytest.mark.django_db
def test_lockout_lasts_exactly_the_cool_off(csm):
    cooloff = settings.AXES_COOLOFF_TIME
    with time_machine.travel(T0, tick=False):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            login(csm.username, "wrong-password")
        assert login(csm.username).status_code == 429
    with time_machine.travel(T0 + cooloff - dt.timedelta(seconds=1), tick=False):
        still = login(csm.username)
        assert still.status_code == 429
        assert still["Retry-After"] == str(int(cooloff.total_seconds()))
    with time_machine.travel(T0 + cooloff + dt.timedelta(seconds=1), tick=False):
        assert login(csm.username).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_parallel_wrong_passwords_hash_at_most_limit_plus_two(counting_hasher, make_user, settings):
    # DRF's login throttle is a second layer (and not atomic either); switched off to test the lock-out.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "10000/min"}}
    user = make_user("csm")
    counting_hasher.calls = 0
    barrier = threading.Barrier(50)

    def attempt(_: int) -> int:
        barrier.wait()
        try:
            return login(user.username, "wrong-password").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(50)))
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= settings.AXES_FAILURE_LIMIT + 2
    assert counting_hasher.calls <= settings.AXES_FAILURE_LIMIT + 2, counting_hasher.calls
    # Every password checked was counted (concurrent ones were refused unchecked, and uncounted).
    failures = AccessAttempt.objects.get(username=user.username).failures_since_start
    assert failures == counting_hasher.calls
    # The right password is refused exactly when that reached the limit.
    locked = failures >= settings.AXES_FAILURE_LIMIT
    assert login(user.username).status_code == (429 if locked else 200)


# --- Enumeration (S3) ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_unknown_user_and_wrong_password_look_and_take_the_same(counting_hasher, make_user):
    user = make_user("csm")
    timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
    bodies: dict[str, set] = {"unknown": set(), "wrong": set()}
    hashes: dict[str, set] = {"unknown": set(), "wrong": set()}
    for trial in range(100):  # 200 trials in all, interleaved so load changes hit both cases alike
        # A fresh address per trial keeps the lock-out (per username and address) out of the way.
        for case, username in (("wrong", user.username), ("unknown", f"nobody-{trial}")):
            ip = f"10.{1 if case == 'wrong' else 2}.0.{trial + 1}"
            calls = counting_hasher.calls
            started = time.perf_counter()
            response = login(username, "wrong-password", ip=ip)
            timings[case].append(time.perf_counter() - started)
            hashes[case].add(counting_hasher.calls - calls)
            bodies[case].add((response.status_code, response.content))
    assert bodies["unknown"] == bodies["wrong"] and len(bodies["wrong"]) == 1
    # The mechanism, exactly: an unknown name costs one hash too (Django hashes a dummy password).
    assert hashes == {"unknown": {1}, "wrong": {1}}
    unknown, wrong = statistics.median(timings["unknown"]), statistics.median(timings["wrong"])
    assert abs(unknown - wrong) / max(unknown, wrong) < 0.25, (unknown, wrong)


@pytest.mark.django_db
def test_spellings_of_an_email_share_one_lockout(csm):
    # Regression: axes keyed failures by the name as typed, so case variants of the e-mail address
    # each got AXES_FAILURE_LIMIT guesses.
    local, domain = csm.email.split("@")
    for n in range(settings.AXES_FAILURE_LIMIT):
        spelling = f"{local.upper() if n % 2 else local}@{domain.upper() if n % 3 else domain}"
        response = APIClient().post("/api/auth/login", {"email": spelling, "password": "nope-nope"}, format="json")
        assert response.status_code in (401, 429)
    assert login(csm.email.upper()).status_code == 429
    assert login(csm.username).status_code == 429
