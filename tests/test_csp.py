"""Every HTML page carries a Content-Security-Policy that allows no inline script without the
request's nonce and no outside host, and the API docs load Swagger UI from our own static files.

The browser half (no violation in a real Chromium, Swagger UI renders offline) is
tests/live/test_csp_browser.py."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

SIDECAR = "/static/drf_spectacular_sidecar/swagger-ui-dist/"


def policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";"))}


def assert_strict(response) -> dict[str, list[str]]:
    """The policy of one page, checked: nothing but our origin, `data:` images and this response's
    nonce; every inline script and style in the page carries that nonce."""
    directives = policy(response)
    nonces = {value for values in directives.values() for value in values if value.startswith("'nonce-")}
    assert len(nonces) <= 1, nonces
    allowed = {"'self'", "'none'", "data:", *nonces}
    assert {value for values in directives.values() for value in values} <= allowed, directives
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'", *nonces]
    assert directives["style-src"] == ["'self'", *nonces]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    html = response.content.decode()
    inline = re.findall(r"<(?:script|style)\b(?![^>]*\bsrc=)[^>]*>", html)
    nonce = nonces.pop()[len("'nonce-") : -1] if nonces else None
    assert [tag for tag in inline if f'nonce="{nonce}"' not in tag and 'type="application/json"' not in tag] == []
    # Every script and stylesheet comes from this origin.
    assert [url for url in re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"]+)"', html) if "//" in url] == []
    return directives


def test_admin_pages_carry_a_strict_policy(admin_user, make_customer):
    make_customer(owner=admin_user)
    client = Client()
    client.force_login(admin_user)
    for url in ("/admin/", "/admin/customers/customer/", "/admin/alerts/alert/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_strict(response)
    login = Client().get("/admin/login/")
    assert login.status_code == 200
    assert_strict(login)


def test_signin_page_carries_a_strict_policy_and_its_style_has_the_nonce():
    response = Client().get("/signin")
    assert response.status_code == 200
    directives = assert_strict(response)
    (nonce,) = [v for v in directives["style-src"] if v.startswith("'nonce-")]
    assert f'<style nonce="{nonce[7:-1]}">' in response.content.decode()


def test_api_docs_load_swagger_ui_from_our_static_files(csm, api_for):
    response = api_for(csm).get("/api/docs")
    assert response.status_code == 200
    directives = assert_strict(response)
    assert len(directives["script-src"]) == 2  # 'self' and the nonce of the start-up script
    html = response.content.decode()
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f'"{SIDECAR}{name}"' in html, name
        asset = Client().get(f"{SIDECAR}{name}")
        assert asset.status_code == 200, name
        assert b"".join(asset.streaming_content)[:1] != b""
    assert "cdn" not in html.lower() and "@latest" not in html


def test_two_requests_get_two_nonces(csm, api_for):
    first, second = (policy(api_for(csm).get("/api/docs"))["script-src"][1] for _ in range(2))
    assert first != second
