"""The workspace a manager works in, in a real headless Chromium against a real uvicorn over
PostgreSQL: the team home (workload per CSM as the daily batch counted it, the book's risk trend
with the model change marked) and a CSM's home counting only their portfolio, compared with counts
taken from the database; and the review queue of customer e-mails: a manager edits and approves
one (it reaches a real SMTP server with the edited subject) and discards two at once. Screenshots
land in .pytest-logs/."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.models import Alert
from alerts.tests.servers import start_smtp
from customers.models import Customer
from customers.selectors import risk_thresholds
from interventions.models import Intervention
from playbooks import services
from playbooks.models import EmailReview, PlaybookExecution
from playbooks.services import playbook_upsert
from predictions.models import ModelVersion, PortfolioSnapshot, PredictionRun
from predictions.services import portfolio_snapshot_take
from tests.helpers import make_alert
from tests.live.conftest import ROOT, eventually, serve_asgi, service_env
from tests.live.test_csp_browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    chromium_or_skip,
    signed_in_admin_page,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
SHOTS = ROOT / ".pytest-logs"
EMAIL_PLAYBOOK = [
    {"key": "task", "type": "create_intervention", "intervention_type": "Call",
     "description": "Call {{ customer.name }}"},
    {"key": "email", "type": "send_email", "to": "customer",
     "subject": "Your {{ customer.plan }} plan at {{ customer.company }}",
     "body": "Dear {{ customer.name }},\n\nwe noticed your team logs in less. Shall we book 20 minutes?\n\nMaya"},
]  # fmt: skip


def _browser(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)


# --- The team home and scoping ------------------------------------------------------------------


def _portfolio(owner, make_customer, risks: list[str], overdue: int, due_later: int, done: int) -> list[Customer]:
    now = timezone.now()
    customers = [
        make_customer(owner=owner, name=f"{owner.first_name}'s account {i}", churn_risk=Decimal(r), mrr=Decimal("800"))
        for i, r in enumerate(risks)
    ]
    overdue_on, later_on = now - dt.timedelta(days=2), now + dt.timedelta(days=5)
    for i in range(overdue):
        Intervention.objects.create(customer=customers[i % len(customers)], type="Call", due_date=overdue_on)
    for i in range(due_later):
        Intervention.objects.create(customer=customers[i % len(customers)], type="QBR", due_date=later_on)
    for i in range(done):
        Intervention.objects.create(
            customer=customers[i % len(customers)], type="Call", status="completed", completed_at=now, due_date=now
        )
    return customers


def _expected(owner=None) -> dict:
    """The home's figures counted straight from the tables (the whole book without an owner)."""
    medium, high = risk_thresholds()
    start = timezone.make_aware(dt.datetime.combine(timezone.localdate(), dt.time.min))
    customers = Customer.objects.filter(is_active=True)
    work = Intervention.objects.filter(status__in=Intervention.OPEN_STATUSES)
    alerts = Alert.objects.filter(status="open")
    if owner is not None:
        customers, work = customers.filter(owner=owner), work.filter(customer__owner=owner)
        alerts = alerts.filter(customer__owner=owner)
    return {
        "high": customers.filter(churn_risk__gte=high).count(),
        "medium": customers.filter(churn_risk__gte=medium, churn_risk__lt=high).count(),
        "active": customers.count(),
        "at_risk": customers.filter(churn_risk__gte=medium).count(),
        "open": work.count(),
        "overdue": work.filter(due_date__lt=start).count(),
        "alerts": alerts.count(),
    }


def _cards(page) -> dict[str, str]:
    values = page.locator(".cs-card .cs-card-value").all_text_contents()
    labels = page.locator(".cs-card .cs-card-label").all_text_contents()
    return dict(zip(labels, values, strict=True))


def test_the_team_home_for_a_manager_and_a_csm_home_scoped_to_the_portfolio(asgi_server, make_user, make_customer):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    maya = make_user("csm", first_name="Maya", last_name="Patel")
    tom = make_user("csm", first_name="Tom", last_name="Berg")
    manager = make_user("manager", first_name="Ines", last_name="Duarte")
    mayas = _portfolio(maya, make_customer, ["0.82", "0.74", "0.45", "0.10"], overdue=3, due_later=1, done=1)
    toms = _portfolio(tom, make_customer, ["0.91", "0.15", "0.12"], overdue=1, due_later=2, done=0)
    make_customer(owner=None, name="Nobody's account", churn_risk=Decimal("0.55"))
    make_alert(mayas[0], title="Critical churn risk: Maya's account 0", severity="critical")
    make_alert(toms[0], title="Payment failed: Tom's account 0", severity="high")
    today = timezone.localdate()
    # Sixty days of snapshots per CSM; the book's risk climbs after the model change 20 days ago.
    PortfolioSnapshot.objects.bulk_create(
        PortfolioSnapshot(
            date=today - dt.timedelta(days=d),
            owner=owner,
            active_customers=active,
            at_risk_customers=(2 if d < 20 else 1) if owner == maya else 1,
            risk_sum=active * (0.45 if d < 20 else 0.30) + (d % 7) * 0.02,
        )
        for d in range(60)
        for owner, active in ((maya, 4), (tom, 3))
    )
    now = timezone.now()
    rules = ModelVersion.objects.create(version="rules-1", kind="rules", trained_at=now, as_of=now)
    PredictionRun.objects.create(
        run_key="batch-0", model_version=rules, started_at=now - dt.timedelta(days=50), status="completed"
    )  # the book's first model: no marker
    version = ModelVersion.objects.create(version="xgb-2026-11", kind="xgboost", trained_at=now, as_of=now)
    changed_on = now - dt.timedelta(days=20)
    PredictionRun.objects.create(run_key="batch-1", model_version=version, started_at=changed_on, status="completed")
    portfolio_snapshot_take()  # as the daily batch does after scoring: the team home reads its count
    team, mine = _expected(), _expected(maya)
    per_csm = {user.get_full_name(): _expected(user) for user in (maya, tom)}
    assert (mine["active"], mine["overdue"], team["active"], team["overdue"]) == (4, 3, 8, 4)  # differ per CSM
    assert mine["high"] >= 1 and team["high"] > mine["high"]

    with sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            # The manager: the whole book's figures, the workload per CSM, the trend with the marker.
            page = signed_in_admin_page(browser, asgi_server, manager)
            assert page.text_content("h1").startswith("Team home")
            cards = _cards(page)
            assert cards["high-risk customers"] == str(team["high"])
            assert cards["medium risk"] == str(team["medium"])
            assert cards["overdue tasks"] == str(team["overdue"])
            assert cards["open alerts"] == str(team["alerts"])
            assert f"MRR at risk of {team['active']} active" in cards
            assert "Customers and risk as counted by the daily scoring run" in page.text_content("#cs-counted-at")
            workload = {}
            for row in page.locator("#cs-workload tbody tr").all():
                cells = [cell.strip() for cell in row.locator("td").all_text_contents()]
                workload[cells[0]] = cells[1:]
            for name, counts in per_csm.items():
                active, at_risk, _mrr, open_work, overdue = workload[name]
                assert (active, at_risk, open_work, overdue) == tuple(
                    str(counts[key]) for key in ("active", "at_risk", "open", "overdue")
                ), name
            assert workload["Unassigned"][:2] == ["1", "1"]
            trend = page.locator("#cs-trend")
            assert trend.locator("svg polyline").count() == 2
            for points in trend.locator("svg polyline").evaluate_all("lines => lines.map(l => l.points.length)"):
                assert points == 60  # a point a day, none dropped
            assert trend.locator("svg line.cs-marker").count() == 1
            assert f"model xgb-2026-11 on {timezone.localdate(changed_on):%-d %b}" in trend.text_content()
            page.screenshot(path=str(SHOTS / "workspace-team-home-manager.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []

            # Maya: her portfolio only, in the cards, the list, the tasks and the chart.
            page = signed_in_admin_page(browser, asgi_server, maya)
            assert page.text_content("h1").startswith("My home")
            cards = _cards(page)
            assert cards["high-risk customers"] == str(mine["high"])
            assert cards["medium risk"] == str(mine["medium"])
            assert cards["overdue tasks"] == str(mine["overdue"])
            assert cards["open alerts"] == str(mine["alerts"])
            assert f"MRR at risk of {mine['active']} active" in cards
            names = page.locator(".cs-table tbody tr td:first-child a").all_text_contents()
            assert names == ["Maya's account 0", "Maya's account 1", "Maya's account 2", "Maya's account 3"]
            tasks = page.locator("#cs-work .cs-list").first.text_content()
            assert "Tom's" not in tasks and tasks.count("overdue since") == 3
            assert page.locator("#cs-workload").count() == 0
            trend = page.locator("#cs-trend")
            assert trend.locator("svg polyline").count() == 2
            # The model change is marked on her chart too: her line jumps on that day as well.
            assert trend.locator("svg line.cs-marker").count() == 1
            page.screenshot(path=str(SHOTS / "workspace-home-csm-scoped.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()


# --- The review queue of customer e-mails -------------------------------------------------------


@pytest.fixture
def smtp():
    handler, controller = start_smtp()
    yield handler
    controller.stop()


@pytest.fixture
def mailing_server(start_process, smtp) -> str:
    """uvicorn whose mail goes to the local SMTP server (tasks run in-process, as in every live test)."""
    env = service_env(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port), EMAIL_USE_TLS="false", EMAIL_TIMEOUT="5")
    return serve_asgi(start_process, env, "uvicorn-mail")


def test_a_manager_edits_and_approves_a_queued_email_and_discards_two(
    mailing_server, smtp, make_user, make_customer, settings
):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    maya = make_user("csm", first_name="Maya", last_name="Patel")
    manager = make_user("manager", first_name="Ines", last_name="Duarte")
    playbook = playbook_upsert(name="Win back quiet accounts", data={"steps": EMAIL_PLAYBOOK})[0]
    acme, globex, initech = (
        make_customer(owner=maya, name=name, company=f"{name} Inc", plan="Gold", email=f"ops@{name.lower()}.example")
        for name in ("Acme", "Globex", "Initech")
    )
    # The engine runs the playbook up to the e-mail step and parks each execution there with a review.
    services.enrol(playbook=playbook, customer_ids=[acme.pk, globex.pk, initech.pk], trigger="manual")
    reviews = {r.customer_id: r for r in EmailReview.objects.filter(status="pending")}
    assert sorted(reviews) == sorted([acme.pk, globex.pk, initech.pk]) and smtp.messages == []
    review = reviews[acme.pk]
    assert review.subject == "Your Gold plan at Acme Inc"
    base = mailing_server

    with sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            page = signed_in_admin_page(browser, base, manager)
            page.goto(f"{base}/admin/playbooks/emailreview/?status__exact=pending")
            assert page.locator("#result_list tbody tr").count() == 3
            page.screenshot(path=str(SHOTS / "email-review-queue.png"), full_page=True)

            # The review page: who it goes to, why it waits, the e-mail as it will read; edit, approve.
            page.locator("#result_list tbody tr:has-text('Acme') a:has-text('Your Gold plan')").click()
            page.wait_for_url(f"{base}/admin/playbooks/emailreview/{review.pk}/review/")
            details = page.text_content("#content-main")
            assert "ops@acme.example" in details and "Win back quiet accounts" in details
            assert "customer e-mails from this playbook wait for review" in details
            preview = page.text_content(".cs-email-preview")
            assert "Your Gold plan at Acme Inc" in preview and "Shall we book 20 minutes?" in preview
            assert page.input_value("#id_subject") == "Your Gold plan at Acme Inc"
            page.screenshot(path=str(SHOTS / "email-review-page.png"), full_page=True)
            page.fill("#id_subject", "20 minutes on your Acme reports?")
            page.click("input[name=_approve]")
            page.wait_for_selector(".messagelist .success")
            assert "Approved: the e-mail to ops@acme.example is being sent." in page.text_content(".messagelist")
            eventually(lambda: smtp.messages, timeout=20)

            # Back on the queue: the two left, discarded at once.
            assert page.locator("#result_list tbody tr").count() == 2
            page.locator("#result_list tbody input.action-select").nth(0).check()
            page.locator("#result_list tbody input.action-select").nth(1).check()
            page.select_option("select[name=action]", "discard_selected")
            page.click("button[name=index]")
            page.wait_for_selector(".messagelist .success")
            assert "Discarded 2 e-mail(s)." in page.text_content(".messagelist")
            page.screenshot(path=str(SHOTS / "email-review-discarded.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()

    # Exactly one e-mail went out, to Acme, with the edited subject and the body as queued.
    assert [m["X-Envelope-To"] for m in smtp.messages] == ["ops@acme.example"]
    assert smtp.messages[0]["Subject"] == "20 minutes on your Acme reports?"
    assert "Shall we book 20 minutes?" in smtp.messages[0].get_payload()
    statuses = dict(EmailReview.objects.values_list("customer_id", "status"))
    assert statuses == {acme.pk: "approved", globex.pk: "discarded", initech.pk: "discarded"}
    assert EmailReview.objects.get(customer=acme).is_edited is True
    assert set(EmailReview.objects.values_list("decided_by", flat=True)) == {manager.pk}

    def finished():
        steps = {
            e.customer_id: [(s["key"], s["status"]) for s in (e.result or {}).get("steps", [])]
            for e in PlaybookExecution.objects.filter(status="completed")
        }
        return steps if len(steps) == 3 else None

    steps = eventually(finished, timeout=20)
    assert steps[acme.pk] == [("task", "succeeded"), ("email", "succeeded")]
    assert steps[globex.pk] == steps[initech.pk] == [("task", "succeeded"), ("email", "skipped")]
