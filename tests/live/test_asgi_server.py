"""End to end over real HTTP: uvicorn serving the ASGI app, a browser-like cookie client."""

import httpx
import pytest

from interventions.models import Intervention

# Transactional: the server and worker processes must see the rows the test commits.
pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
APP_ORIGIN = "http://localhost:5173"


def test_cookie_sign_in_list_and_write_over_real_http(asgi_server, csm, make_customer):
    customers = [make_customer(owner=csm) for _ in range(3)]
    with httpx.Client(base_url=asgi_server, timeout=10) as browser:
        login = browser.post("/api/auth/login", json={"username": csm.username, "password": "s3cret-pass-123"})
        assert login.status_code == 200
        assert "cs_access" in browser.cookies

        listed = browser.get("/api/customers?per_page=2", headers={"Origin": APP_ORIGIN})
        assert listed.status_code == 200
        assert listed.headers["X-Total-Count"] == "3"
        assert listed.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        assert listed.headers["Access-Control-Allow-Credentials"] == "true"
        assert [c["id"] for c in listed.json()] == [customers[0].pk, customers[1].pk]
        assert 'rel="next"' in listed.headers["Link"]

        body = {"customerId": customers[0].pk, "type": "Executive Check-in"}
        refused = browser.post("/api/interventions", json=body, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        created = browser.post("/api/interventions", json=body, headers={"Origin": APP_ORIGIN})
        assert created.status_code == 201
        assert Intervention.objects.get().customer_id == customers[0].pk

        browser.post("/api/auth/logout", headers={"Origin": APP_ORIGIN})
        assert browser.get("/api/customers").status_code == 401


def test_cors_preflight_allows_only_listed_origins(asgi_server):
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{asgi_server}/api/interventions",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )

    assert preflight(APP_ORIGIN).headers.get("Access-Control-Allow-Origin") == APP_ORIGIN
    assert "Access-Control-Allow-Origin" not in preflight("https://evil.example").headers


def _signed_in(asgi_server: str, user) -> dict[str, str]:
    login = httpx.post(
        f"{asgi_server}/api/auth/login", json={"username": user.username, "password": "s3cret-pass-123"}, timeout=10
    )
    return {"Authorization": f"Bearer {login.json()['access']}", "Content-Type": "application/json"}


def _chunked(data: bytes, size: int = 64 * 1024):
    # A generator body makes httpx send Transfer-Encoding: chunked (no Content-Length).
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_json_body_is_parsed_like_any_other(asgi_server, csm, make_customer):
    customer = make_customer(owner=csm)
    body = b'{"customerId": %d, "type": "Executive Check-in"}' % customer.pk
    response = httpx.post(
        f"{asgi_server}/api/interventions", content=_chunked(body, 8), headers=_signed_in(asgi_server, csm), timeout=10
    )
    assert response.status_code == 201, response.text
    assert Intervention.objects.get().customer_id == customer.pk


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversize_body_is_413_json_and_nothing_written(asgi_server, csm, make_customer, settings, chunked):
    customer = make_customer(owner=csm)
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    body = b'{"customerId": %d, "type": "Call", "notes": "%s"}' % (customer.pk, padding.encode())
    response = httpx.post(
        f"{asgi_server}/api/interventions",
        content=_chunked(body) if chunked else body,
        headers=_signed_in(asgi_server, csm),
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json() == {
        "message": f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        "code": "payload_too_large",
        "errors": {},
    }
    assert Intervention.objects.count() == 0
    # The server keeps serving (the refused connection is closed, not the process).
    assert httpx.get(f"{asgi_server}/healthz", timeout=10).status_code == 200
