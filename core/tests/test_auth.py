"""Sign-in (contract: Authentication; RELIABILITY S3): JWT in body and cookies, rotation,
blacklist on logout, Origin check for cookie writes, lock-out after repeated failures."""

import datetime as dt

import jwt
import pytest
import time_machine
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from interventions.models import Intervention

TRUSTED = "http://localhost:5173"


def login(client: APIClient, username: str, password: str = "s3cret-pass-123", **extra):
    return client.post("/api/auth/login", {"username": username, "password": password}, format="json", **extra)


@pytest.mark.django_db
def test_login_returns_tokens_user_and_httponly_cookies(csm):
    client = APIClient()
    response = login(client, csm.username)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"] == {
        "id": csm.pk,
        "username": csm.username,
        "email": csm.email,
        "name": csm.get_full_name(),
        "role": "csm",
    }
    access = response.cookies[settings.AUTH_COOKIE_ACCESS]
    refresh = response.cookies[settings.AUTH_COOKIE_REFRESH]
    assert access.value == body["access"] and access["httponly"] and access["samesite"] == "Lax"
    assert refresh.value == body["refresh"] and refresh["httponly"] and refresh["path"] == "/"


@pytest.mark.django_db
def test_login_by_email(csm):
    response = APIClient().post("/api/auth/login", {"email": csm.email, "password": "s3cret-pass-123"}, format="json")
    assert response.status_code == 200
    assert response.json()["user"]["id"] == csm.pk


@pytest.mark.django_db
def test_wrong_password_and_unknown_user_get_the_same_answer(csm):
    wrong = login(APIClient(), csm.username, "nope-nope-nope")
    unknown = login(APIClient(), "nobody-here", "nope-nope-nope")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "message": "Invalid username or password.",
            "code": "invalid_credentials",
            "errors": {},
        }
    )


@pytest.mark.django_db
def test_login_missing_fields_names_them():
    response = APIClient().post("/api/auth/login", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"password"}
    response = APIClient().post("/api/auth/login", {"password": "x"}, format="json")
    assert response.status_code == 400
    assert "username" in response.json()["errors"]


@pytest.mark.django_db
def test_bearer_and_cookie_both_authenticate(csm, make_customer):
    make_customer(owner=csm)
    tokens = login(APIClient(), csm.username).json()
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert bearer.get("/api/customers").status_code == 200
    cookie = APIClient()
    cookie.cookies[settings.AUTH_COOKIE_ACCESS] = tokens["access"]
    assert cookie.get("/api/customers").status_code == 200
    assert APIClient().get("/api/customers").status_code == 401


@pytest.mark.django_db
def test_cookie_write_needs_a_trusted_origin(csm, make_customer):
    customer = make_customer(owner=csm)
    client = APIClient()
    login(client, csm.username)  # cookies now in the client jar
    body = {"customerId": customer.pk, "type": "Executive Check-in"}

    no_origin = client.post("/api/interventions", body, format="json")
    evil = client.post("/api/interventions", body, format="json", HTTP_ORIGIN="https://evil.example")
    assert no_origin.status_code == evil.status_code == 403
    assert Intervention.objects.count() == 0

    ok = client.post("/api/interventions", body, format="json", HTTP_ORIGIN=TRUSTED)
    assert ok.status_code == 201
    referer = client.post("/api/interventions", body, format="json", HTTP_REFERER=f"{TRUSTED}/customers/1")
    assert referer.status_code == 201
    assert Intervention.objects.count() == 2


@pytest.mark.django_db
def test_bearer_write_needs_no_origin(csm, make_customer, api_for):
    customer = make_customer(owner=csm)
    response = api_for(csm).post("/api/interventions", {"customerId": customer.pk, "type": "Call"}, format="json")
    assert response.status_code == 201


@pytest.mark.django_db
def test_refresh_rotates_and_old_refresh_is_refused(csm):
    first = login(APIClient(), csm.username).json()["refresh"]
    rotated = APIClient().post("/api/auth/refresh", {"refresh": first}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != first
    reused = APIClient().post("/api/auth/refresh", {"refresh": first}, format="json")
    assert reused.status_code == 401
    assert reused.json()["code"] == "token_not_valid"


@pytest.mark.django_db
def test_refresh_from_cookie_checks_origin(csm):
    client = APIClient()
    login(client, csm.username)
    assert client.post("/api/auth/refresh", HTTP_ORIGIN="https://evil.example").status_code == 403
    response = client.post("/api/auth/refresh", HTTP_ORIGIN=TRUSTED)
    assert response.status_code == 200
    assert response.cookies[settings.AUTH_COOKIE_ACCESS].value == response.json()["access"]


@pytest.mark.django_db
def test_logout_blacklists_refresh_and_clears_cookies(csm):
    refresh = login(APIClient(), csm.username).json()["refresh"]
    response = APIClient().post("/api/auth/logout", {"refresh": refresh}, format="json")
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert response.cookies[settings.AUTH_COOKIE_ACCESS].value == ""
    assert APIClient().post("/api/auth/refresh", {"refresh": refresh}, format="json").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["other_key", "alg_none", "expired", "wrong_type"])
def test_forged_or_expired_tokens_are_refused(csm, case):
    token = AccessToken.for_user(csm)
    if case == "other_key":
        raw = jwt.encode(dict(token.payload), "another-key-entirely-another-key-xx", algorithm="HS256")
    elif case == "alg_none":
        raw = jwt.encode(dict(token.payload), None, algorithm="none")
    elif case == "expired":
        token.set_exp(lifetime=-dt.timedelta(seconds=1))
        raw = str(token)
    else:
        payload = dict(token.payload, token_type="refresh")
        raw = jwt.encode(payload, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.get("/api/customers")
    assert response.status_code == 401
    assert response.json()["code"] in {"token_not_valid", "authentication_failed"}


@pytest.mark.django_db
def test_inactive_user_and_password_change_revoke_tokens(csm, api_for):
    client = api_for(csm)
    assert client.get("/api/customers").status_code == 200
    csm.set_password("a-new-password-456")
    csm.save()
    assert client.get("/api/customers").status_code == 401

    client = api_for(csm)
    csm.is_active = False
    csm.save()
    assert client.get("/api/customers").status_code == 401


@pytest.mark.django_db
def test_lockout_after_repeated_failures_and_only_for_that_user(csm, other_csm):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit):
        assert login(APIClient(), csm.username, "wrong-password").status_code in (401, 429)
    locked = login(APIClient(), csm.username)  # the right password, while locked
    assert locked.status_code == 429
    assert locked.json()["code"] == "locked_out"
    assert "access" not in locked.json()
    # Another user from the same address is unaffected.
    assert login(APIClient(), other_csm.username).status_code == 200

    with time_machine.travel(dt.datetime.now(dt.UTC) + settings.AXES_COOLOFF_TIME + dt.timedelta(minutes=1)):
        assert login(APIClient(), csm.username).status_code == 200


@pytest.mark.django_db
def test_signin_page_sets_cookies_and_redirects(client, csm):
    page = client.get("/signin?next=/api/docs")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post("/signin", {"username": csm.username, "password": "s3cret-pass-123", "next": "/api/docs"})
    assert response.status_code == 303
    assert response["Location"] == "/api/docs"
    assert response.cookies[settings.AUTH_COOKIE_ACCESS].value


@pytest.mark.django_db
def test_signin_page_refuses_offsite_redirect_and_bad_password(client, csm):
    response = client.post(
        "/signin", {"username": csm.username, "password": "s3cret-pass-123", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/admin/"  # as without a next: csm is staff
    bad = client.post("/signin", {"username": csm.username, "password": "nope"})
    assert bad.status_code == 401
    assert settings.AUTH_COOKIE_ACCESS not in bad.cookies


@pytest.mark.django_db
def test_admin_session_cookie_alone_does_not_authenticate_the_api(client, csm):
    client.force_login(csm)
    assert client.get("/api/customers").status_code == 401
