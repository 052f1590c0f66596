"""The admin workspace in a real headless Chromium against a real uvicorn: the home as a CSM and
as a manager, the customer 360 page, and logging an activity from it — under the strict CSP (no
violation), with nothing fetched from outside this server. Screenshots land in .pytest-logs/."""

import datetime as dt
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from interventions.models import Intervention
from predictions.models import ChurnPrediction, PortfolioSnapshot
from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, RECORD_VIOLATIONS, chromium_or_skip

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
PASSWORD = "s3cret-pass-123"
CAUSE = {
    "cause": "Low engagement",
    "factor": "Actions per session (30 days)",
    "value": "Actions per session (30 days): 1.6 — retained customers: 2.6",
    "impact": 0.6,
}


def _book(csm, make_customer) -> int:
    now = timezone.now()
    customer = make_customer(owner=csm, name="Initech", churn_risk=Decimal("0.8200"), health_score=35)
    for weeks, risk, health in ((10, "0.4000", 60), (6, "0.5500", 50), (2, "0.7000", 42), (0, "0.8200", 35)):
        ChurnPrediction.objects.create(
            customer=customer,
            churn_probability=Decimal(risk),
            risk_level="high",
            top_causes=[CAUSE],
            prediction_date=now - dt.timedelta(weeks=weeks),
            health_score=health,
        )
    Intervention.objects.create(customer=customer, type="Executive Check-in", due_date=now - dt.timedelta(days=1))
    today = timezone.localdate()
    PortfolioSnapshot.objects.bulk_create(
        PortfolioSnapshot(
            date=today - dt.timedelta(days=d), owner=csm, active_customers=1, at_risk_customers=1, risk_sum=0.5
        )
        for d in range(30)
    )
    return customer.pk


def test_home_and_customer_page_and_logging_an_activity(asgi_server, make_user, make_customer):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    csm = make_user("csm", first_name="Maya", last_name="Patel")
    manager = make_user("manager")
    customer_id = _book(csm, make_customer)
    local = urlsplit(asgi_server).netloc
    outside: list[str] = []
    shots = ROOT / ".pytest-logs"

    def only_local(route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == local or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:

            def signed_in(user):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(RECORD_VIOLATIONS)
                context.route("**/*", only_local)
                page = context.new_page()
                page.goto(f"{asgi_server}/admin/login/?next=/admin/")
                page.fill("#id_username", user.username)
                page.fill("#id_password", PASSWORD)
                page.click("input[type=submit]")
                page.wait_for_url(f"{asgi_server}/admin/")
                return page

            # The CSM lands on their home: the customer to call, the overdue task, their trend.
            page = signed_in(csm)
            assert page.text_content("h1").startswith("My home")
            first_row = page.locator(".cs-table tbody tr").first
            assert "Initech" in first_row.text_content() and "82.0% high" in first_row.text_content()
            assert "retained customers: 2.6" in first_row.text_content()
            assert "overdue since" in page.text_content("#cs-work")
            assert page.locator(".cs-chart svg polyline").count() == 2
            page.screenshot(path=str(shots / "workspace-home-csm.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []

            # The customer 360, reached from the home.
            first_row.locator("a").first.click()
            page.wait_for_url(f"{asgi_server}/admin/customers/customer/{customer_id}/change/")
            assert page.text_content("h1") == "Initech · " + page.text_content("h1").split(" · ", 1)[1]
            assert "82.0%" in page.text_content(".cs-360-head")
            assert "Actions per session (30 days): 1.6 — retained customers: 2.6" in page.text_content(".cs-causes")
            assert page.locator(".cs-chart svg circle").count() == 8  # four scores, risk and health
            assert page.evaluate("document.querySelector('#id_name').tagName") == "INPUT"
            page.screenshot(path=str(shots / "workspace-customer-360.png"), full_page=True)

            # Log a meeting with a follow-up: three inputs, then it is on the timeline.
            page.select_option("#id_activity", "meeting")
            page.fill("#id_notes", "Walked the VP through the new reports")
            page.fill("#id_follow_up", (timezone.localdate() + dt.timedelta(days=7)).isoformat())
            page.click("#cs-activity-form input[type=submit]")
            page.wait_for_selector(".messagelist .success")
            assert "Meeting logged; follow-up due" in page.text_content(".messagelist")
            timeline = page.text_content(".cs-timeline")
            assert "Meeting logged by Maya Patel" in timeline
            assert "Walked the VP through the new reports" in timeline
            assert "Follow up: meeting" in page.text_content(".cs-360")
            page.click(".cs-filters a:text('Activities & work')")
            page.wait_for_selector(".cs-filters a.cs-on:text('Activities & work')")
            assert page.locator(".cs-timeline li").count() == 3  # the meeting, its follow-up, the check-in
            page.screenshot(path=str(shots / "workspace-customer-360-activity.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []

            # The manager's home: the team's workload and the book's trend.
            page = signed_in(manager)
            assert page.text_content("h1").startswith("Team home")
            assert "Maya Patel" in page.text_content(".cs-workspace")
            assert page.is_visible("text=Team workload")
            page.screenshot(path=str(shots / "workspace-home-manager.png"), full_page=True)
            page.click("text=All admin pages")
            page.wait_for_url(f"{asgi_server}/admin/apps/")
            assert page.is_visible("#content-main .app-customers")
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()

    assert outside == []
    assert Intervention.objects.filter(customer_id=customer_id, activity="meeting").count() == 1
