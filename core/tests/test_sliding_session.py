"""The React app never calls refresh (contract: Authentication): an API request whose access
cookie has expired renews the pair from the refresh cookie, rotation, blacklisting and family
revocation kept; sign-out and password changes revoke at once. Also `/signin?next=` on trusted
origins, staff landing on the admin, and the cross-site cookie mode."""

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from core.auth.tokens import set_auth_cookies

TRUSTED = "http://localhost:5173"
ACCESS, REFRESH = settings.AUTH_COOKIE_ACCESS, settings.AUTH_COOKIE_REFRESH
EXPIRED = {"message": "Your session has expired. Sign in again.", "code": "token_not_valid", "errors": {}}


def signed_in(user) -> APIClient:
    """A browser-like client: cookies only, no Authorization header."""
    client = APIClient()
    response = client.post("/api/auth/login", {"username": user.username, "password": "s3cret-pass-123"}, format="json")
    assert response.status_code == 200
    return client


def later(minutes: int):
    return time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes), tick=False)


def drop_access_cookie(client: APIClient) -> None:
    """What the browser does when the access cookie's max-age (the access lifetime) passes."""
    del client.cookies[ACCESS]


@pytest.mark.django_db
def test_an_expired_access_cookie_is_renewed_on_the_next_request(csm, make_customer):
    make_customer(owner=csm)
    client = signed_in(csm)
    old_refresh = client.cookies[REFRESH].value
    with later(16):
        assert client.get("/api/customers").status_code == 200  # the stale cookie is still sent
        drop_access_cookie(client)
        response = client.get("/api/customers")
    assert response.status_code == 200 and len(response.json()) == 1
    assert response.cookies[ACCESS].value and response.cookies[REFRESH].value != old_refresh
    assert response.cookies[REFRESH]["path"] == "/" and response.cookies[REFRESH]["httponly"]
    assert BlacklistedToken.objects.filter(token__token=old_refresh).count() == 1
    with later(17):  # the new pair works as any other
        assert client.get("/api/customers").status_code == 200


@pytest.mark.django_db
def test_the_session_slides_past_the_first_refresh_lifetime(csm):
    client = signed_in(csm)
    days = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].days
    for step in range(1, 3):  # each visit within the refresh lifetime renews it
        with later(step * (days - 1) * 24 * 60):
            drop_access_cookie(client)
            assert client.get("/api/alerts").status_code == 200


@pytest.mark.django_db
def test_no_renewal_after_sign_out(csm):
    client = signed_in(csm)
    old_refresh = client.cookies[REFRESH].value
    with later(16):
        drop_access_cookie(client)
        assert client.get("/api/alerts").status_code == 200  # renewed: the successor of old_refresh
        renewed = client.cookies[REFRESH].value
        assert client.post("/api/auth/logout", HTTP_ORIGIN=TRUSTED).status_code == 200
        for raw in (old_refresh, renewed):  # within the grace window, yet neither renews
            replay = APIClient()
            replay.cookies[REFRESH] = raw
            response = replay.get("/api/alerts")
            assert (response.status_code, response.json()) == (401, EXPIRED)
            assert response.cookies[REFRESH].value == "" and response.cookies[ACCESS].value == ""  # cleared


@pytest.mark.django_db
def test_no_renewal_after_a_password_change(csm):
    client = signed_in(csm)
    csm.set_password("a-new-password-456")
    csm.save()
    blacklisted = BlacklistedToken.objects.count()
    drop_access_cookie(client)
    response = client.get("/api/alerts")
    assert (response.status_code, response.json()) == (401, EXPIRED)
    assert BlacklistedToken.objects.count() == blacklisted  # nothing rotated


@pytest.mark.django_db
def test_renewal_on_a_write_needs_a_trusted_origin(csm, make_customer):
    customer = make_customer(owner=csm)
    client = signed_in(csm)
    drop_access_cookie(client)
    outstanding = OutstandingToken.objects.count()
    body = {"customerId": customer.pk, "type": "email", "priority": "high", "description": "x"}
    refused = client.post("/api/interventions", body, format="json", HTTP_ORIGIN="https://evil.example")
    assert refused.status_code == 403
    assert OutstandingToken.objects.count() == outstanding and BlacklistedToken.objects.count() == 0
    assert customer.interventions.count() == 0
    assert client.post("/api/interventions", body, format="json", HTTP_ORIGIN=TRUSTED).status_code == 201


@pytest.mark.django_db
def test_reuse_after_the_grace_window_revokes_the_family(csm):
    client = signed_in(csm)
    spent = client.cookies[REFRESH].value
    drop_access_cookie(client)
    assert client.get("/api/alerts").status_code == 200
    newest = client.cookies[REFRESH].value
    grace = settings.AUTH_REFRESH_REUSE_GRACE.total_seconds()
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace + 1), tick=False):
        thief = APIClient()
        thief.cookies[REFRESH] = spent
        assert thief.get("/api/alerts").status_code == 401
        owner = APIClient()
        owner.cookies[REFRESH] = newest
        assert owner.get("/api/alerts").status_code == 401  # the whole sign-in is revoked


@pytest.mark.django_db(transaction=True)
def test_parallel_requests_renewing_one_refresh_cookie_all_succeed(make_user, make_customer):
    user = make_user("csm")
    make_customer(owner=user)
    client = signed_in(user)
    spent = client.cookies[REFRESH].value
    barrier = threading.Barrier(8)

    def request(_: int) -> tuple[int, int, str]:
        browser = APIClient()
        browser.cookies[REFRESH] = spent  # the app's parallel calls after the access cookie expired
        barrier.wait()
        try:
            response = browser.get("/api/customers")
            return response.status_code, len(response.json()), response.cookies[REFRESH].value
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(request, range(8)))
    assert [(status, rows) for status, rows, _ in results] == [(200, 1)] * 8
    issued = {raw for _, _, raw in results}
    assert len(issued) == 8 and spent not in issued
    # The family was not revoked: whichever cookie the browser kept goes on working.
    for raw in issued:
        browser = APIClient()
        browser.cookies[REFRESH] = raw
        assert browser.get("/api/alerts").status_code == 200


@pytest.mark.django_db
def test_signin_next_may_be_any_url_on_a_trusted_origin(client, csm, settings):
    settings.TRUSTED_ORIGINS = [*settings.TRUSTED_ORIGINS, "https://app.example.com"]
    for next_url in ("https://app.example.com/customers?risk=high", f"{TRUSTED}/dashboard"):
        response = client.post("/signin", {"username": csm.username, "password": "s3cret-pass-123", "next": next_url})
        assert (response.status_code, response["Location"]) == (303, next_url)
    page = client.get("/signin?next=https://app.example.com/x")
    assert b'value="https://app.example.com/x"' in page.content
    for untrusted in ("https://evil.example/", "https://app.example.com.evil.example/", "javascript:alert(1)"):
        response = client.post("/signin", {"username": csm.username, "password": "s3cret-pass-123", "next": untrusted})
        assert response["Location"] == "/admin/", untrusted


@pytest.mark.django_db
def test_without_next_staff_land_on_the_admin_and_others_on_the_docs(client, make_user):
    staff = make_user("manager")
    response = client.post("/signin", {"username": staff.username, "password": "s3cret-pass-123"})
    assert (response.status_code, response["Location"]) == (303, "/admin/")
    assert client.get("/admin/").status_code == 200  # signed in to the admin too
    member = make_user("viewer")
    member.is_staff = False
    member.save(update_fields=["is_staff"])
    other = Client()
    response = other.post("/signin", {"username": member.username, "password": "s3cret-pass-123"})
    assert (response.status_code, response["Location"]) == (303, "/api/docs")
    assert other.get("/admin/").status_code == 302  # not signed in to the admin


@pytest.mark.django_db
def test_cross_site_mode_sets_samesite_none_and_secure(csm, settings):
    from django.http import HttpResponse

    settings.AUTH_COOKIE_SAMESITE, settings.AUTH_COOKIE_SECURE = "None", False
    response = HttpResponse()
    set_auth_cookies(response, access="a", refresh="r")
    for name in (ACCESS, REFRESH):
        assert (response.cookies[name]["samesite"], response.cookies[name]["secure"]) == ("None", True)
    client = APIClient()
    login = client.post("/api/auth/login", {"username": csm.username, "password": "s3cret-pass-123"}, format="json")
    assert login.cookies[ACCESS]["samesite"] == "None" and login.cookies[ACCESS]["secure"] is True
    # The Origin check still guards cookie writes.
    assert client.post("/api/auth/logout", HTTP_ORIGIN="https://evil.example").status_code == 403
