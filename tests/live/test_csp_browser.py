"""The Content-Security-Policy in a real headless Chromium against a real uvicorn: the API docs
and the admin (with the alert bell) run without a single CSP violation, and Swagger UI renders
every operation of the schema with no request leaving this machine (anything else is aborted,
as on an offline machine)."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from core.auth.tokens import issue_tokens
from tests.live.conftest import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Every violation, whatever the console says about it.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(`${event.effectiveDirective} ${event.blockedURI} ${where}`);
});
"""
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CHURNSHIELD_REQUIRE_SERVICES"):
        pytest.fail("/usr/bin/chromium is required in CI (.ci/run installs it)")
    pytest.skip("needs Debian's chromium (apt-get install -y chromium)")


def signed_in_admin_page(
    browser,
    base: str,
    user,
    *,
    landing: str = "/admin/",
    color_scheme: str = "light",
    password: str = "s3cret-pass-123",
):
    """A new page signed in to the admin as `user` (the `make_user` fixture's password) and landed on
    `landing`, recording CSP violations in `window.__cspViolations`."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=color_scheme)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.goto(f"{base}/admin/login/?next={landing}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}{landing}")
    return page


def test_docs_and_admin_run_under_the_policy_offline(asgi_server, admin_user, make_customer):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    make_customer(owner=admin_user, name="Initech")
    token = issue_tokens(admin_user)["access"]
    schema = httpx.get(f"{asgi_server}/api/schema?format=json", headers={"Authorization": f"Bearer {token}"}).json()
    operations = sum(1 for item in schema["paths"].values() for method in item if method in METHODS)
    assert operations >= 40  # the whole API, not an empty document
    local = urlsplit(asgi_server).netloc
    requests: list[str] = []
    console: list[str] = []

    def only_local(route) -> None:
        # An offline machine: nothing outside this server answers.
        url = route.request.url
        if urlsplit(url).netloc == local or url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            context.add_init_script(RECORD_VIOLATIONS)
            context.route("**/*", only_local)
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

            page.goto(f"{asgi_server}/signin?next=/api/docs")
            assert page.evaluate("window.__cspViolations") == []
            page.fill("#username", admin_user.username)
            page.fill("#password", "s3cret-pass-123")
            page.click("button[type=submit]")
            page.wait_for_url(f"{asgi_server}/api/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() == operations
            assert page.text_content(".info .title").startswith("ChurnShield API")
            page.screenshot(path=str(ROOT / ".pytest-logs" / "api-docs.png"))
            assert page.evaluate("window.__cspViolations") == []

            page.goto(f"{asgi_server}/admin/login/?next=/admin/")
            page.fill("#id_username", admin_user.username)
            page.fill("#id_password", "s3cret-pass-123")
            page.click("input[type=submit]")
            page.wait_for_selector("#cs-alert-bell.cs-bell-live", timeout=15_000)  # the bell's script and socket
            assert page.evaluate("getComputedStyle(document.querySelector('.cs-bell-menu')).position") == "absolute"
            assert page.evaluate("window.__cspViolations") == []

            page.goto(f"{asgi_server}/admin/customers/customer/")
            page.wait_for_selector("#result_list")
            assert page.text_content("#result_list tbody").count("Initech") == 1
            page.click("#cs-alert-bell .cs-bell-button")
            assert page.is_visible(".cs-bell-menu")
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()

    assert [url for url in requests if urlsplit(url).netloc != local and not url.startswith("data:")] == []
    assert [line for line in console if "Content Security Policy" in line or line.startswith("error")] == []
