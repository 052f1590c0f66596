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
