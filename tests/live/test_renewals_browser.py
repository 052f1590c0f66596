"""The renewals page in a real headless Chromium against a real uvicorn, as a CSM: only their
portfolio's renewals, the 30-day filter, the CSV export of the filtered list, and the forecast
page, all without a CSP violation."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, RECORD_VIOLATIONS, chromium_or_skip

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_a_csm_filters_and_exports_their_renewals(asgi_server, csm, other_csm, make_customer):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    today = timezone.localdate()
    make_customer(
        owner=csm,
        name="Initech",
        mrr=Decimal("800.00"),
        churn_risk=Decimal("0.5000"),
        contract_value=Decimal("9600.00"),
        renewal_date=today + dt.timedelta(days=12),
    )
    make_customer(owner=csm, name="Globex", renewal_date=today + dt.timedelta(days=120))
    make_customer(owner=other_csm, name="Rival Corp", renewal_date=today + dt.timedelta(days=3))
    shots = ROOT / ".pytest-logs"
    shots.mkdir(exist_ok=True)

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
            context.add_init_script(RECORD_VIOLATIONS)
            page = context.new_page()
            page.goto(f"{asgi_server}/admin/login/?next=/admin/customers/renewal/")
            page.fill("#id_username", csm.username)
            page.fill("#id_password", "s3cret-pass-123")
            page.click("input[type=submit]")
            page.wait_for_selector("#result_list")
            body = page.text_content("#result_list tbody")
            assert ("Initech" in body, "Globex" in body, "Rival" in body) == (True, True, False)

            page.click("text=30 days")
            page.wait_for_url("**/admin/customers/renewal/?within=30")
            rows = page.locator("#result_list tbody tr")
            assert rows.count() == 1
            assert "Initech" in rows.first.text_content()
            assert "400.00" in rows.first.text_content()  # revenue at risk: 800 x 0.5
            page.screenshot(path=str(shots / "renewals.png"), full_page=True)

            with page.expect_download() as download_info:
                page.click("a.renewals-export")
            with open(download_info.value.path(), encoding="utf-8-sig") as exported:
                lines = exported.read().splitlines()
            assert len(lines) == 2  # the header and Initech: the filter applies to the export
            cells = lines[1].split(",")
            assert (cells[1], cells[3], cells[4], cells[9]) == (
                "Initech",
                str(today + dt.timedelta(days=12)),
                "12",
                "400.00",
            )

            page.click("text=Forecast and retention")
            page.wait_for_selector("#renewal-forecast")
            page.screenshot(path=str(shots / "renewal-forecast.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()
