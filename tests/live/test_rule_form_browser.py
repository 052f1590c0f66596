"""A manager builds a trigger rule by form in a real headless Chromium against a real uvicorn: only
the chosen kind's settings show, a two-condition segment, an error on the row it belongs to, the
fix, the live match count, and the stored JSON is what the form built. No CSP violation; the page
is captured in light and dark mode."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from playbooks import rules
from playbooks.models import TriggerRule
from playbooks.services import playbook_upsert
from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, chromium_or_skip, signed_in_admin_page

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_a_manager_builds_a_rule_with_a_two_condition_segment(asgi_server, manager, make_customer):
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    playbook_upsert(name="Renewal call", data={"steps": [{"type": "wait", "duration": "1d"}]})
    soon = timezone.localdate() + dt.timedelta(days=30)
    make_customer(owner=manager, plan="Enterprise", mrr=Decimal("1500.00"), renewal_date=soon)
    make_customer(owner=manager, plan="Enterprise", mrr=Decimal("300.00"))
    make_customer(owner=manager, plan="Pro", mrr=Decimal("4000.00"), renewal_date=soon)
    shots = ROOT / ".pytest-logs"
    shots.mkdir(exist_ok=True)

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = signed_in_admin_page(browser, asgi_server, manager, landing="/admin/playbooks/triggerrule/add/")
            page.select_option("#id_playbook", label="Renewal call")
            page.select_option("#id_kind", "renewal_within")
            # Only the chosen kind's settings show.
            expect(page.locator("#id_renewal_days")).to_be_visible()
            expect(page.locator("#id_points")).to_be_hidden()
            expect(page.locator("#id_cause")).to_be_hidden()
            page.fill("#id_renewal_days", "")

            page.select_option("#id_segment-0-field", "plan")
            expect(page.locator("[data-rule-row]").first.locator("[data-value=plans]")).to_be_visible()
            expect(page.locator("#id_segment-0-number")).to_be_hidden()
            page.check("input[name='segment-0-plans'][value='Enterprise']")
            page.click("[data-rule-add]")
            page.select_option("#id_segment-1-field", "mrr")
            # MRR is compared: "is one of" is not offered, and the operator moved to one that is.
            assert page.input_value("#id_segment-1-op") == "gte"
            page.fill("#id_segment-1-number", "-5")
            page.click("input[name=_save]")

            # Errors on the field and on the row they belong to; nothing was saved.
            page.wait_for_selector(".errornote")
            expect(page.locator(".field-renewal_days .errorlist")).to_have_text("Renewal is near needs this.")
            second = page.locator("[data-rule-row]").nth(1)
            expect(second.locator(".errorlist")).to_have_text("MRR cannot be below 0.")
            expect(page.locator("#id_renewal_days")).to_be_visible()
            page.screenshot(path=str(shots / "rule-form-errors.png"), full_page=True)

            page.fill("#id_renewal_days", "90")
            page.fill("#id_segment-1-number", "1000")
            # The live count: the form as it stands, among the customers this manager sees.
            expect(page.locator("[data-rule-preview-text]")).to_contain_text("Matches 1 customer now")
            page.screenshot(path=str(shots / "rule-form-light.png"), full_page=True)
            page.click("input[name=_save]")
            page.wait_for_url(f"{asgi_server}/admin/playbooks/triggerrule/")
            row = page.locator("#result_list tbody tr").first
            expect(row).to_contain_text("Renewal within 90 days — plan is Enterprise and MRR ≥ 1,000")
            expect(row).to_contain_text("paused: waiting for a manager's go-ahead")
            assert page.evaluate("window.__cspViolations") == []
            page.screenshot(path=str(shots / "rule-list-light.png"), full_page=True)
            page.context.close()

            dark = signed_in_admin_page(
                browser, asgi_server, manager, landing="/admin/playbooks/triggerrule/", color_scheme="dark"
            )
            dark.screenshot(path=str(shots / "rule-list-dark.png"), full_page=True)
            dark.click("#result_list tbody tr a")
            dark.wait_for_selector("[data-rule-rows]")
            dark.screenshot(path=str(shots / "rule-form-dark.png"), full_page=True)
            assert dark.evaluate("window.__cspViolations") == []
        finally:
            browser.close()

    rule = TriggerRule.objects.get()
    assert (rule.kind, rule.params, rule.segment) == (
        "renewal_within",
        {"days": 90},
        {"plan": ["Enterprise"], "mrrGte": 1000},
    )
    assert not rules.is_approved(rule)
