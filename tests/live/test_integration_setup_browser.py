"""Integration setup in a real headless Chromium against a real uvicorn: a manager sets up Stripe
by its form against the local fake Stripe API (real HTTP), tests the connection (a rejected key,
then a good one), copies the webhook URL and saves; the key is nowhere in the page afterwards, the
integration is connected, and the integrations list fits a 1400 px window. No CSP violation."""

import pytest

from integrations.models import Integration
from integrations.tests.fakes import FakeProvider, stripe_customer, stripe_list
from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, chromium_or_skip, signed_in_admin_page

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
GOOD_KEY = "sk_test_browser_GOODKEY_123456"
BAD_KEY = "sk_test_browser_BADKEY_654321"
SIGNING = "whsec_browser_signing_secret"


@pytest.fixture
def fake_stripe():
    server = FakeProvider()
    customers = [stripe_customer(1, "a@example.com")]
    server.routes[("GET", "/v1/customers")] = lambda p, q, b: stripe_list(customers, q, p)
    refusal = {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****4321"}}
    server.auth = (f"Bearer {GOOD_KEY}", (401, refusal, {}))
    yield server
    server.close()


def test_a_manager_sets_up_stripe_by_form(asgi_server, manager, fake_stripe):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    # A long error on another integration: the list must still fit the window.
    Integration.objects.create(
        name="HubSpot CRM",
        type="crm",
        status="error",
        config={"provider": "hubspot"},
        last_error="PermanentError: GET /crm/v3/owners: HTTP 401 "
        + "The OAuth token used to make this call expired. " * 4,
        consecutive_failures=3,
    )
    shots = ROOT / ".pytest-logs"
    shots.mkdir(exist_ok=True)
    add = "/admin/integrations/integration/add/"

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = signed_in_admin_page(browser, asgi_server, manager, landing=add)
            page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=asgi_server)
            page.click("a[data-provider=stripe]")
            page.wait_for_selector("#id_api_key")
            page.fill("#id_name", "Stripe (EU account)")
            page.fill("#id_api_key", BAD_KEY)
            page.fill("#id_signing_secret", SIGNING)
            page.fill("#id_api_base", fake_stripe.base_url)
            page.fill("#id_sync_interval_minutes", "30")

            page.click("#cs-test-connection")
            page.wait_for_selector("#cs-test-result.cs-fail")
            assert page.text_content("#cs-test-result") == (
                "Stripe refused the credentials (HTTP 401): Invalid API Key provided: sk_test_****4321"
            )
            page.fill("#id_api_key", GOOD_KEY)
            page.click("#cs-test-connection")
            page.wait_for_selector("#cs-test-result.cs-ok")
            assert page.text_content("#cs-test-result") == "Stripe accepted the API key: it can read your customers."
            assert page.input_value("input[name=connection_check]") != ""
            page.screenshot(path=str(shots / "integration-setup-add.png"), full_page=True)

            page.click("input[name=_continue]")
            page.wait_for_selector("#cs-webhook-url")
            html = page.content()
            assert GOOD_KEY not in html and BAD_KEY not in html and SIGNING not in html
            assert page.text_content("fieldset .field-state .readonly").strip() == "Connected"
            webhook_url = page.input_value("#cs-webhook-url")
            assert webhook_url.startswith(f"{asgi_server}/api/webhooks/stripe/")
            page.click("#cs-copy-webhook")
            page.wait_for_selector("#cs-copy-result:has-text('Copied.')")
            assert page.evaluate("navigator.clipboard.readText()") == webhook_url
            page.screenshot(path=str(shots / "integration-setup-change.png"), full_page=True)

            dark = signed_in_admin_page(
                browser, asgi_server, manager, landing=page.url.removeprefix(asgi_server), color_scheme="dark"
            )
            dark.wait_for_selector("#cs-webhook-url")
            dark.screenshot(path=str(shots / "integration-setup-change-dark.png"), full_page=True)
            assert dark.evaluate("window.__cspViolations") == []
            dark.context.close()

            page.click("input[name=_save]")
            page.wait_for_selector("#result_list")
            assert GOOD_KEY not in page.content() and SIGNING not in page.content()
            table = page.locator("#result_list").bounding_box()
            assert table is not None and table["x"] + table["width"] <= 1400
            assert page.evaluate("document.documentElement.scrollWidth") <= 1400
            page.screenshot(path=str(shots / "integration-list.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()

    integration = Integration.objects.get(name="Stripe (EU account)")
    assert integration.status == "connected"
    assert integration.config == {
        "provider": "stripe",
        "api_key": GOOD_KEY,
        "signing_secret": SIGNING,
        "api_base": fake_stripe.base_url,
        "sync_interval_minutes": 30,
    }
    assert webhook_url == f"{asgi_server}/api/webhooks/stripe/{integration.pk}"
    # The two tests and nothing else: no sync ran.
    assert [(call[0], call[1]) for call in fake_stripe.calls] == [("GET", "/v1/customers")] * 2
