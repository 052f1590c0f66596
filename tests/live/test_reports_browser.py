"""The Reports page in a real headless Chromium against a real uvicorn over PostgreSQL: a manager
sees the book's charts (a bar per CSM, plan, size, playbook group and intervention type), a CSM
sees only their portfolio's, both under the admin's CSP in light and dark themes. Bar counts are
compared with counts taken from the database. Screenshots land in .pytest-logs/."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import Customer
from interventions.models import Intervention
from playbooks.models import Playbook, PlaybookExecution
from predictions.models import PortfolioSnapshot
from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, chromium_or_skip, signed_in_admin_page

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
SHOTS = ROOT / ".pytest-logs"


def _bars(page, section: str) -> int:
    return page.locator(f"#{section} svg rect.cs-bar").count()


def _book(make_user, make_customer):
    maya = make_user("csm", first_name="Maya", last_name="Patel")
    tom = make_user("csm", first_name="Tom", last_name="Berg")
    manager = make_user("manager", first_name="Ines", last_name="Duarte")
    now = timezone.now()
    plans = ["Starter", "Pro", "Enterprise"]
    for i in range(12):
        owner = maya if i < 7 else tom
        make_customer(
            owner=owner,
            name=f"{owner.first_name}'s account {i}",
            plan=plans[i % 3] if owner == maya else "Pro",
            mrr=Decimal([150, 600, 2400, 8000][i % 4]),
            churn_risk=Decimal(i % 10) / 10 + Decimal("0.05"),
        )
    customers = list(Customer.objects.order_by("pk"))
    for i, customer in enumerate(customers):
        Intervention.objects.create(
            customer=customer,
            type=["Executive Check-in", "Product Training", "Payment Recovery"][i % 3],
            status=["active", "completed", "completed", "pending"][i % 4],
            outcome=[None, "succeeded", "failed", None][i % 4],
            due_date=now + dt.timedelta(days=(i % 3) - 1),
        )
    # A playbook with enough matured outcomes in both groups (Maya's customers stand in again and
    # again, as a customer can be enrolled once a month), and one without a holdout.
    measured = Playbook.objects.create(name="Win back quiet accounts", holdout_share=0.5)
    Playbook.objects.create(name="Onboarding call", holdout_share=0.0)
    mayas = [c for c in customers if c.owner_id == maya.pk]
    PlaybookExecution.objects.bulk_create(
        PlaybookExecution(
            playbook=measured,
            customer=mayas[n % len(mayas)],
            status="completed",
            started_at=now - dt.timedelta(days=40 + n),
            is_holdout=n % 2 == 1,
        )
        for n in range(70)
    )
    today = timezone.localdate()
    PortfolioSnapshot.objects.bulk_create(
        PortfolioSnapshot(
            date=today - dt.timedelta(days=d), owner=owner, active_customers=n, risk_sum=n * 0.4, at_risk_customers=1
        )
        for d in range(30)
        for owner, n in ((maya, 7), (tom, 5))
    )
    return maya, tom, manager


def test_reports_charts_for_a_manager_and_a_csm_scoped_to_the_portfolio(asgi_server, make_user, make_customer):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    maya, tom, manager = _book(make_user, make_customer)
    book_plans = set(Customer.objects.values_list("plan", flat=True))
    maya_plans = set(Customer.objects.filter(owner=maya).values_list("plan", flat=True))
    maya_types = set(Intervention.objects.filter(customer__owner=maya).values_list("type", flat=True))
    assert (len(book_plans), len(maya_plans), len(maya_types)) == (3, 3, 3)
    at_risk = {
        user.get_full_name(): sum(c.mrr * c.churn_risk for c in Customer.objects.filter(owner=user, is_active=True))
        for user in (maya, tom)
    }
    at_risk_tooltips = [f"{name}: ${value:,.0f}" for name, value in sorted(at_risk.items(), key=lambda kv: -kv[1])]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            for scheme in ("light", "dark"):
                page = signed_in_admin_page(
                    browser, asgi_server, manager, landing="/admin/reports/", color_scheme=scheme
                )
                assert page.text_content("h1").startswith("Reports: the book")
                assert page.locator("#cs-trend svg polyline").count() == 2
                assert _bars(page, "cs-distribution") == 10
                assert _bars(page, "cs-revenue-owner") == 2  # Maya and Tom
                assert _bars(page, "cs-revenue-plan") == len(book_plans)
                assert _bars(page, "cs-revenue-segment") == 4
                assert page.locator("#cs-workload .cs-bar-label").all_text_contents() == ["Maya Patel", "Tom Berg"]
                assert _bars(page, "cs-playbooks") == 2  # enrolled and holdout of the measured playbook
                assert "no holdout group" in page.text_content("#cs-playbooks")
                assert page.locator("#cs-outcomes .cs-bar-label").count() == 3
                tooltips = page.locator("#cs-revenue-owner svg rect title").all_text_contents()
                assert tooltips == at_risk_tooltips
                page.screenshot(path=str(SHOTS / f"reports-manager-{scheme}.png"), full_page=True)
                assert page.evaluate("window.__cspViolations") == []

                page = signed_in_admin_page(browser, asgi_server, maya, landing="/admin/reports/", color_scheme=scheme)
                assert page.text_content("h1").startswith("Reports: my portfolio")
                assert page.locator("#cs-trend svg polyline").count() == 2
                assert _bars(page, "cs-revenue-owner") == 1
                assert page.locator("#cs-revenue-owner .cs-bar-label").all_text_contents() == ["Maya Patel"]
                assert _bars(page, "cs-revenue-plan") == len(maya_plans)
                assert page.locator("#cs-workload .cs-bar-label").all_text_contents() == ["Maya Patel"]
                assert page.locator("#cs-outcomes .cs-bar-label").count() == len(maya_types)
                assert "Tom" not in page.text_content("#content-main")
                assert int(page.text_content("#cs-distribution h2").split("·")[1].split()[0]) == 7
                page.screenshot(path=str(SHOTS / f"reports-csm-{scheme}.png"), full_page=True)
                assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()
