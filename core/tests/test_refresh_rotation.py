"""Refresh-token rotation (contract: Authentication): a refresh token is spent by its first use,
whatever races it; reusing a spent one revokes every token rotated from the same sign-in; a
token whose user is gone, inactive or has changed password is refused with 401 JSON."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

REFUSED = {"message": "Refresh token is invalid or expired.", "code": "token_not_valid", "errors": {}}


def login(user) -> str:
    response = APIClient().post(
        "/api/auth/login", {"username": user.username, "password": "s3cret-pass-123"}, format="json"
    )
    assert response.status_code == 200
    return response.json()["refresh"]


def refresh(raw: str):
    return APIClient().post("/api/auth/refresh", {"refresh": raw}, format="json")


@pytest.mark.django_db(transaction=True)
def test_parallel_refreshes_with_one_token_have_exactly_one_winner(make_user):
    user = make_user("csm")
    for _ in range(5):  # the race is not won the same way every time
        raw = login(user)
        barrier = threading.Barrier(8)

        def attempt(_: int, raw: str = raw, barrier: threading.Barrier = barrier) -> tuple[int, dict]:
            barrier.wait()
            try:
                response = refresh(raw)
                return response.status_code, response.json()
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(attempt, range(8)))
        assert sorted(status for status, _ in results) == [200] + [401] * 7
        assert [body for status, body in results if status == 401] == [REFUSED] * 7
        # The others used a spent token: the family is revoked, the winner's new token included.
        (winner,) = [body for status, body in results if status == 200]
        assert refresh(winner["refresh"]).json() == REFUSED


@pytest.mark.django_db
def test_a_reused_token_revokes_every_token_rotated_from_it(csm):
    first = login(csm)
    elsewhere = login(csm)  # another sign-in (another device): another family
    second = refresh(first).json()["refresh"]
    third = refresh(second).json()["refresh"]
    blacklisted = BlacklistedToken.objects.count()

    reused = refresh(first)
    assert (reused.status_code, reused.json()) == (401, REFUSED)
    assert BlacklistedToken.objects.count() == blacklisted + 1  # the newest, `third`
    assert refresh(third).json() == REFUSED
    assert refresh(second).json() == REFUSED
    assert refresh(elsewhere).status_code == 200


@pytest.mark.django_db
def test_a_token_issued_before_families_rotates_once_then_its_family_is_revoked(csm):
    legacy = str(RefreshToken.for_user(csm))  # a plain jti, as issued before
    rotated = refresh(legacy)
    assert rotated.status_code == 200
    assert refresh(legacy).json() == REFUSED
    assert refresh(rotated.json()["refresh"]).json() == REFUSED


@pytest.mark.django_db
def test_refresh_for_a_deleted_user_is_a_401_json(csm):
    raw = login(csm)
    csm.delete()
    response = refresh(raw)
    assert (response.status_code, response.json()) == (401, REFUSED)
    assert OutstandingToken.objects.filter(user__isnull=False).count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["password", "inactive"])
def test_refresh_after_a_password_change_or_deactivation_is_refused(csm, change):
    raw = login(csm)
    if change == "password":
        csm.set_password("a-new-password-456")
    else:
        csm.is_active = False
    csm.save()
    blacklisted = BlacklistedToken.objects.count()
    response = refresh(raw)
    assert (response.status_code, response.json()) == (401, REFUSED)
    assert BlacklistedToken.objects.count() == blacklisted  # nothing was rotated
