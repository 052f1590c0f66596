"""The React app's calls (../shared/contract/API.md) end to end through a real uvicorn, as the
browser makes them: cookies only (no Authorization header), an Origin on writes, whole lists
without paging parameters. Then what the app relies on between visits: an expired access cookie
renewed from the refresh cookie (also when several calls race), and the cross-site cookie mode
(`SameSite=None; Secure`, CORS with credentials, the Origin check kept)."""

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from playbooks.models import Playbook
from predictions.services.registry import model_promote, rules_version
from tests.helpers import make_alert, make_intervention, make_prediction
from tests.live.conftest import serve_asgi, service_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

APP = "http://localhost:5173"  # in TRUSTED_ORIGINS by default
PASSWORD = "s3cret-pass-123"
ACCESS, REFRESH = settings.AUTH_COOKIE_ACCESS, settings.AUTH_COOKIE_REFRESH


def serve(start_process, name: str, **env: str) -> str:
    return serve_asgi(start_process, service_env(**env), name)


def browser(base: str) -> httpx.Client:
    """The app's fetch: credentials included, an Origin on every call, never a bearer token."""
    return httpx.Client(base_url=base, headers={"Origin": APP}, timeout=30)


def sign_in(client: httpx.Client, username: str) -> None:
    response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200
    assert {ACCESS, REFRESH} <= set(client.cookies)


def expired_access(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-dt.timedelta(minutes=1))
    return str(token)


@pytest.fixture
def book(make_user, make_customer):
    model_promote(rules_version(), "live app journey")
    manager = make_user("manager")
    customers = [
        make_customer(owner=manager, churn_risk=Decimal("0.9100")),
        *(make_customer(owner=manager) for _ in range(119)),  # more than one default page (100)
        make_customer(owner=manager, churn_risk=Decimal("0.9500"), is_active=False),
    ]
    first = customers[0]
    make_prediction(first, "0.9100", causes=[{"cause": "Support issues", "factor": "Open tickets", "impact": 0.25}])
    intervention = make_intervention(first)
    alert = make_alert(first)
    playbook = Playbook.objects.create(
        name="Support rescue",
        intervention_type="support_escalation",
        steps=[{"key": "a", "type": "create_alert", "title": "t", "message": "m"}],
    )
    return {
        "manager": manager,
        "customers": customers,
        "intervention": intervention,
        "alert": alert,
        "playbook": playbook,
    }


def test_every_contract_call_with_cookies_only_then_a_sliding_renewal(start_process, book):
    base = serve(start_process, "uvicorn-app-journey")
    manager, customers = book["manager"], book["customers"]
    first, intervention, alert = customers[0], book["intervention"], book["alert"]
    with browser(base) as app:
        sign_in(app, manager.username)
        reads = {
            "/api/customers": list,
            f"/api/customers/{first.pk}": dict,
            f"/api/customers/{first.pk}/sessions": list,
            f"/api/customers/{first.pk}/timeline": list,
            "/api/interventions": list,
            "/api/interventions/analytics": dict,
            "/api/integrations": list,
            "/api/dashboard/metrics": dict,
            "/api/dashboard/chart-data": dict,
            "/api/alerts": list,
            "/api/v1/causes/explain": dict,
            "/api/churn-causes": list,
            "/api/ml/analytics": dict,
            "/api/ml/feature-importance": dict,
            "/model/metrics/latest": dict,
        }
        bodies = {}
        for path, kind in reads.items():
            response = app.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            assert "Authorization" not in response.request.headers
            bodies[path] = response.json()
            assert isinstance(bodies[path], kind), path
        # Whole lists, counted as the app counts them (client-side).
        assert len(bodies["/api/customers"]) == 121 and bodies["/api/customers"][0]["id"] == first.pk
        assert app.get("/api/customers?per_page=50").headers["X-Total-Count"] == "121"
        assert bodies["/api/dashboard/metrics"]["customersAtRisk"] == 1  # the churned 95 % is not
        assert [d["label"] for d in bodies["/api/dashboard/chart-data"]["datasets"]] == ["Churn Risk %", "MRR"]

        writes = [
            ("POST", "/api/v1/churn/predict", {"customerId": first.pk}, 200),
            ("POST", "/api/v1/causes/explain", {"customerId": first.pk}, 200),
            ("POST", "/api/ml/batch-predict", {"customerIds": [c.pk for c in customers[:50]]}, 200),
            ("POST", "/api/ml/recommend-intervention", {"customerId": first.pk}, 200),
            (
                "POST",
                "/api/interventions",
                {"customerId": first.pk, "type": "email", "priority": "high", "description": "Call them"},
                201,
            ),
            ("PATCH", f"/api/interventions/{intervention.pk}", {"status": "completed"}, 200),
            ("POST", "/api/interventions/bulk", {"taskIds": [str(intervention.pk)], "action": "escalate"}, 200),
            (
                "POST",
                "/api/interventions/bulk-apply",
                {"userIds": [customers[1].pk], "interventionType": "email", "notes": "n"},
                200,
            ),
            ("PATCH", f"/api/alerts/{alert.pk}/read", None, 200),
            (
                "POST",
                "/api/v1/playbooks/trigger",
                {"customerId": first.pk, "playbookId": book["playbook"].pk},
                200,
            ),
            ("POST", "/api/ml/update-outcome", {"customerId": first.pk, "intervention": "email", "success": True}, 200),
            ("POST", "/api/import/customers/csv", {"csv": "name,email\nNew One,new.one@example.com\n"}, 200),
        ]
        for method, path, body, status in writes:
            response = app.request(method, path, json=body)
            assert response.status_code == status, (path, response.text[:300])
        predicted = app.post("/api/v1/churn/predict", json={"customerId": first.pk}).json()
        assert all(0 <= cause["impact"] <= 100 for cause in predicted["topCauses"])
        assert any(row["email"] == "new.one@example.com" for row in app.get("/api/customers").json())
        # A write from another origin is refused, cookies or not.
        foreign = app.post(
            "/api/interventions", json={"customerId": first.pk}, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403

        # The access cookie has expired (sent stale, or already dropped by the browser): the
        # next calls renew it from the refresh cookie, several at once as the app fires them.
        refresh = app.cookies[REFRESH]
        cookie_sets = [{ACCESS: expired_access(manager), REFRESH: refresh}, {REFRESH: refresh}]
        barrier = threading.Barrier(6)

        def call(i: int) -> tuple[int, str, str]:
            with browser(base) as tab:
                tab.cookies.update(cookie_sets[i % 2])
                barrier.wait()
                response = tab.get(["/api/customers", "/api/alerts", "/api/dashboard/metrics"][i % 3])
                return response.status_code, response.cookies.get(ACCESS, ""), response.cookies.get(REFRESH, "")

        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(call, range(6)))
        assert [status for status, _, _ in results] == [200] * 6
        assert all(access and new_refresh and new_refresh != refresh for _, access, new_refresh in results)
        # Whichever renewed pair the browser kept goes on working, cookies only.
        with browser(base) as tab:
            tab.cookies.update({REFRESH: results[-1][2]})
            assert tab.get("/api/interventions").status_code == 200
            assert tab.post("/api/auth/logout").status_code == 200
            assert tab.get("/api/interventions").status_code == 401  # signed out: no renewal
        with browser(base) as tab:  # the sibling tokens of that sign-in are revoked too
            tab.cookies.update({REFRESH: results[0][2]})
            assert tab.get("/api/interventions").status_code == 401


def test_cross_site_cookie_mode(start_process, book):
    app_origin = "https://app.example.net"
    base = serve(
        start_process,
        "uvicorn-cross-site",
        AUTH_COOKIE_SAMESITE="None",
        TRUSTED_ORIGINS=f"{app_origin},{APP}",
    )
    manager, first = book["manager"], book["customers"][0]
    login = httpx.post(
        f"{base}/api/auth/login",
        json={"username": manager.username, "password": PASSWORD},
        headers={"Origin": app_origin},
    )
    assert login.status_code == 200
    assert login.headers["access-control-allow-origin"] == app_origin
    assert login.headers["access-control-allow-credentials"] == "true"
    set_cookies = login.headers.get_list("set-cookie")
    assert len(set_cookies) == 2
    for header in set_cookies:
        assert "SameSite=None" in header and "Secure" in header and "HttpOnly" in header, header
    # A client keeps no Secure cookie over plain http: send them back as a browser would over https.
    cookies = dict(header.split(";", 1)[0].split("=", 1) for header in set_cookies)
    assert set(cookies) == {ACCESS, REFRESH}
    jar = "; ".join(f"{name}={value}" for name, value in cookies.items())

    preflight = httpx.options(
        f"{base}/api/interventions",
        headers={
            "Origin": app_origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == app_origin
    listed = httpx.get(f"{base}/api/customers", headers={"Origin": app_origin, "Cookie": jar})
    assert listed.status_code == 200 and len(listed.json()) == 121
    assert listed.headers["access-control-allow-origin"] == app_origin
    assert "x-total-count" in listed.headers["access-control-expose-headers"].lower()
    body = {"customerId": first.pk, "type": "email", "priority": "high", "description": "x"}
    created = httpx.post(f"{base}/api/interventions", json=body, headers={"Origin": app_origin, "Cookie": jar})
    assert created.status_code == 201
    foreign = httpx.post(
        f"{base}/api/interventions", json=body, headers={"Origin": "https://evil.example", "Cookie": jar}
    )
    assert foreign.status_code == 403
    # Renewal in this mode sets the same kind of cookies.
    renewed = httpx.get(f"{base}/api/alerts", headers={"Origin": app_origin, "Cookie": f"{REFRESH}={cookies[REFRESH]}"})
    assert renewed.status_code == 200
    assert all("SameSite=None" in h and "Secure" in h for h in renewed.headers.get_list("set-cookie"))
    assert len(renewed.headers.get_list("set-cookie")) == 2
