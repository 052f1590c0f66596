"""The Reports page of the admin (workspace/reports.py, docs/reports.md).

Real database, real admin view through Django's test client. Every figure is compared with an
aggregate computed here independently, straight from the rows; a CSM's page counts only their
customers; the interval math is checked against published and hand-computed values.
"""

import datetime as dt
import math
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from customers.models import Customer
from customers.selectors import risk_revenue_groups
from interventions.models import Intervention
from playbooks.models import Playbook, PlaybookExecution
from predictions.models import PortfolioSnapshot
from predictions.services import portfolio_snapshot_take
from workspace.reports import (
    MIN_MATURED_PER_GROUP,
    SEGMENTS,
    newcombe_interval,
    wilson_interval,
)

pytestmark = pytest.mark.django_db
PAGE = "/admin/reports/"
CENT = Decimal("0.01")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def section(html: str, anchor: str) -> str:
    """The HTML of one `<section id=…>` (or `<div id=…>`) of the page."""
    match = re.search(rf'<(section|div)[^>]* id="{anchor}"(.*?)</\1>', html, flags=re.S)
    assert match, anchor
    return match.group(2)


def bars(html: str) -> int:
    return len(re.findall(r'<rect class="cs-bar ', html))


# --- A small book -------------------------------------------------------------------------------


@pytest.fixture
def book(make_customer, csm, other_csm):
    """Two CSMs and an unassigned account over three plans and every size, every 10-point risk
    band touched, churned customers (not counted), work of three types in every state, and a
    snapshot trail."""
    now = timezone.now()
    specs = [
        (csm, "Pro", "150.00", "0.0500"),
        (csm, "Pro", "900.00", "0.5500"),
        (csm, "Enterprise", "7000.00", "0.9100"),
        (csm, "Basic", "250.00", "1.0000"),
        (csm, "Basic", "1200.00", "0.3000"),
        (other_csm, "Pro", "4999.99", "0.8500"),
        (other_csm, "Enterprise", "5000.00", "0.1500"),
        (other_csm, "", "80.00", "0.6500"),
        (None, "Basic", "300.00", "0.4500"),
    ]
    customers = [
        make_customer(owner=owner, plan=plan, mrr=Decimal(mrr), churn_risk=Decimal(risk))
        for owner, plan, mrr, risk in specs
    ]
    make_customer(owner=csm, is_active=False, churn_risk=Decimal("0.9900"), mrr=Decimal("9999"))  # churned
    make_customer(owner=other_csm, is_active=False, churn_risk=Decimal("0.9900"), mrr=Decimal("9999"))
    overdue, later = now - dt.timedelta(days=3), now + dt.timedelta(days=3)
    work = [
        (0, "Executive Check-in", "active", None, overdue),
        (1, "Executive Check-in", "completed", "succeeded", None),
        (2, "Executive Check-in", "completed", "failed", None),
        (3, "Product Training", "pending", None, later),
        (4, "Product Training", "cancelled", None, None),
        (4, "Product Training", "completed", None, None),
        (5, "Payment Recovery", "in_progress", None, overdue),
        (6, "Payment Recovery", "completed", "succeeded", None),
        (7, "Executive Check-in", "active", None, later),
        (8, "Payment Recovery", "pending", None, overdue),
    ]
    for i, kind, status, outcome, due in work:
        Intervention.objects.create(
            customer=customers[i],
            type=kind,
            status=status,
            outcome=outcome,
            due_date=due,
            completed_at=now if status == "completed" else None,
        )
    Intervention.objects.create(customer=customers[0], type="call", status="completed", activity="call")
    today = timezone.localdate()
    PortfolioSnapshot.objects.bulk_create(
        PortfolioSnapshot(date=today - dt.timedelta(days=d), owner=owner, active_customers=5, risk_sum=2.0)
        for d in range(20)
        for owner in (csm, other_csm)
    )
    return customers


def expected_customers(owner=None) -> dict:
    """Independent aggregates over the active customers (of one owner, or the whole book)."""
    active = Customer.objects.filter(is_active=True)
    if owner is not None:
        active = active.filter(owner=owner)
    bins = []
    for i in range(10):
        band = active.filter(churn_risk__gte=Decimal(i) / 10)
        band = band.filter(churn_risk__lt=Decimal(i + 1) / 10) if i < 9 else band
        bins.append(band.count())
    by_owner, by_plan = {}, {}
    by_size = {name: Decimal(0) for _, _, name in SEGMENTS}
    for customer in active.select_related("owner"):
        at_risk = customer.mrr * customer.churn_risk
        owner_name = customer.owner.get_full_name() if customer.owner else "Unassigned"
        by_owner[owner_name] = by_owner.get(owner_name, Decimal(0)) + at_risk
        plan = customer.plan or "No plan"
        by_plan[plan] = by_plan.get(plan, Decimal(0)) + at_risk
        size = next(
            name for low, high, name in SEGMENTS if customer.mrr >= low and (high is None or customer.mrr < high)
        )
        by_size[size] += at_risk
    return {
        "bins": bins,
        "by_owner": {k: v.quantize(CENT) for k, v in by_owner.items()},
        "by_plan": {k: v.quantize(CENT) for k, v in by_plan.items()},
        "by_size": {k: v.quantize(CENT) for k, v in by_size.items()},
    }


def expected_work(owner=None) -> dict:
    start = timezone.make_aware(dt.datetime.combine(timezone.localdate(), dt.time.min))
    work = Intervention.objects.all()
    if owner is not None:
        work = work.filter(customer__owner=owner)
    open_work = work.filter(status__in=["pending", "active", "in_progress"])
    outcomes = {}
    for kind in set(work.filter(activity="").values_list("type", flat=True)):
        rows = work.filter(activity="", type=kind)
        outcomes[kind] = (
            rows.filter(status="completed", outcome="succeeded").count(),
            rows.filter(status="completed", outcome="failed").count(),
            rows.filter(status="completed", outcome__isnull=True).count(),
            rows.filter(status__in=["pending", "active", "in_progress"]).count(),
            rows.filter(status="cancelled").count(),
        )
    return {"open": open_work.count(), "overdue": open_work.filter(due_date__lt=start).count(), "outcomes": outcomes}


def figures(context: dict) -> dict:
    revenue = context["revenue"]
    return {
        "bins": context["distribution"]["counts"],
        "by_owner": {r["name"]: r["revenue_at_risk"] for r in revenue["by_owner"]["rows"]},
        "by_plan": {r["name"]: r["revenue_at_risk"] for r in revenue["by_plan"]["rows"]},
        "by_size": {r["name"]: r["revenue_at_risk"] for r in revenue["by_segment"]["rows"]},
    }


def outcomes(context: dict) -> dict:
    keys = ("succeeded", "failed", "no_outcome", "open", "cancelled")
    return {row["type"]: tuple(row[key] for key in keys) for row in context["outcomes"]["rows"]}


# --- Every chart against the database -----------------------------------------------------------


def test_a_managers_charts_count_the_whole_book_as_the_tables_do(book, manager, csm, other_csm):
    response = client_for(manager).get(PAGE)
    assert response.status_code == 200
    context = response.context["reports"]
    assert context["team"] is True
    assert figures(context) == expected_customers()
    assert sum(context["distribution"]["counts"]) == 9  # the two churned customers are not in the book's risk
    work = expected_work()
    assert (context["workload"]["open"], context["workload"]["overdue"]) == (work["open"], work["overdue"]) == (5, 3)
    per_csm = {row["owner"]: (row["open"], row["overdue"]) for row in context["workload"]["rows"]}
    assert per_csm == {
        csm.get_full_name(): (expected_work(csm)["open"], expected_work(csm)["overdue"]),
        other_csm.get_full_name(): (expected_work(other_csm)["open"], expected_work(other_csm)["overdue"]),
        "Unassigned": (1, 1),
    }
    assert outcomes(context) == work["outcomes"]
    assert outcomes(context)["Executive Check-in"] == (1, 1, 0, 2, 0)

    html = response.content.decode()
    assert bars(section(html, "cs-distribution")) == 10  # one column per 10-point band
    assert bars(section(html, "cs-revenue-owner")) == 3  # two CSMs and the unassigned account
    assert bars(section(html, "cs-revenue-plan")) == 4  # Pro, Enterprise, Basic, no plan
    assert bars(section(html, "cs-revenue-segment")) == len(SEGMENTS)
    # Stacked: one rect per non-empty part (overdue / open not overdue) per CSM.
    assert bars(section(html, "cs-workload")) == 5
    assert bars(section(html, "cs-outcomes")) == 3 + 3 + 2  # one rect per non-empty part of each type
    assert "<polyline" in section(html, "cs-trend")
    assert "None" not in html and "_" not in re.sub(r"<[^>]*>", "", section(html, "cs-outcomes"))


def test_a_csm_sees_charts_of_their_portfolio_only(book, csm, other_csm):
    response = client_for(csm).get(PAGE)
    context = response.context["reports"]
    assert context["team"] is False
    mine = expected_customers(csm)
    assert figures(context) == mine
    assert figures(context) != expected_customers()  # the book differs: the scope is doing the work
    assert sum(context["distribution"]["counts"]) == 5
    assert [r["name"] for r in context["revenue"]["by_owner"]["rows"]] == [csm.get_full_name()]
    work = expected_work(csm)
    assert [(r["owner"], r["open"], r["overdue"]) for r in context["workload"]["rows"]] == [
        (csm.get_full_name(), work["open"], work["overdue"])
    ]
    assert outcomes(context) == work["outcomes"]
    assert "Payment Recovery" not in outcomes(context)  # only other portfolios had that work

    html = response.content.decode()
    assert other_csm.get_full_name() not in html and "Unassigned" not in html
    assert bars(section(html, "cs-revenue-owner")) == 1
    assert bars(section(html, "cs-revenue-plan")) == 3  # Pro, Enterprise, Basic
    assert "My portfolio" in html and "My workload" in html


def test_revenue_at_risk_rolls_owners_past_the_top_fifteen_into_others(make_customer, make_user, manager):
    owners = [make_user("csm") for _ in range(17)]
    for n, owner in enumerate(owners):
        make_customer(owner=owner, mrr=Decimal(100 + n), churn_risk=Decimal("0.5000"))
    rows = client_for(manager).get(PAGE).context["reports"]["revenue"]["by_owner"]["rows"]
    assert [r["name"] for r in rows][-1] == "Others (2)"
    assert rows[-1]["revenue_at_risk"] == Decimal("50.50") + Decimal("50.00")  # the two smallest
    assert rows[0]["revenue_at_risk"] == Decimal("58.00") and len(rows) == 16


# --- The book as the daily batch counted it -----------------------------------------------------


def test_a_managers_customer_figures_come_from_the_snapshot_and_equal_a_live_count(book, manager, csm):
    """Once the batch has counted the book, a manager's page sums the stored rows: the same figures
    as the live count, dated, and a change made since shows at the next count, not before."""
    portfolio_snapshot_take()
    counted_at = PortfolioSnapshot.objects.filter(taken_at__isnull=False).latest("taken_at").taken_at
    stored = [
        {**group, "owner_id": row.owner_id}
        for row in PortfolioSnapshot.objects.filter(date=timezone.localdate(), taken_at__isnull=False)
        for group in row.report_groups
    ]
    assert len(stored) == len(set(Customer.objects.filter(is_active=True).values_list("owner", "plan"))) == 7
    live = {(g["owner_id"], g["plan"]): g for g in risk_revenue_groups(Customer.objects.filter(is_active=True))}
    for group in stored:
        row = live[(group["owner_id"], group["plan"])]
        assert group["bands"] == [row[f"band_{i}"] for i in range(10)]
        assert [None if v is None else Decimal(v) for v in group["sizes"]] == [row[f"size_{i}"] for i in range(4)]

    response = client_for(manager).get(PAGE)
    context = response.context["reports"]
    assert context["counted_at"] == counted_at
    assert figures(context) == expected_customers()  # as the independent count over the rows
    html = response.content.decode()
    assert "as counted by the daily scoring run" in section(html, "content-main")
    assert timezone.localtime(counted_at).strftime("%H:%M") in html

    # A customer who grows riskier after the count: the page keeps the counted figures...
    book[0].churn_risk = Decimal("0.9500")
    book[0].save(update_fields=["churn_risk"])
    assert figures(client_for(manager).get(PAGE).context["reports"]) != expected_customers()
    # ...and the next count has it.
    portfolio_snapshot_take()
    assert figures(client_for(manager).get(PAGE).context["reports"]) == expected_customers()


def test_a_csms_page_stays_live_and_undated_after_the_count(book, csm):
    portfolio_snapshot_take()
    book[0].churn_risk = Decimal("0.9500")
    book[0].save(update_fields=["churn_risk"])
    response = client_for(csm).get(PAGE)
    assert response.context["reports"]["counted_at"] is None
    assert figures(response.context["reports"]) == expected_customers(csm)
    assert "as counted by the daily scoring run" not in response.content.decode()


def test_rows_counted_before_the_snapshot_held_the_reports_figures_are_not_used(book, manager):
    portfolio_snapshot_take()
    PortfolioSnapshot.objects.filter(owner=None, taken_at__isnull=False).update(report_groups=None)
    context = client_for(manager).get(PAGE).context["reports"]
    assert context["counted_at"] is None
    assert figures(context) == expected_customers()


# --- Playbooks against the holdout --------------------------------------------------------------


def enrolments(playbook, customers, *, holdout: bool, churned: int, days_ago: int = 40) -> None:
    """Finished enrolments started `days_ago`, the first `churned` customers churning after the start."""
    started = timezone.now() - dt.timedelta(days=days_ago)
    PlaybookExecution.objects.bulk_create(
        PlaybookExecution(playbook=playbook, customer=c, status="completed", started_at=started, is_holdout=holdout)
        for c in customers
    )
    Customer.objects.filter(pk__in=[c.pk for c in customers[:churned]]).update(
        is_active=False, churned_at=started + dt.timedelta(days=10)
    )


def test_a_playbook_against_its_holdout_with_newcombes_interval_once_both_groups_are_big_enough(
    make_customer, csm, manager
):
    playbook = Playbook.objects.create(name="Win back", holdout_share=0.5)
    enrolled = [make_customer(owner=csm) for _ in range(40)]
    held_out = [make_customer(owner=csm) for _ in range(MIN_MATURED_PER_GROUP)]
    enrolments(playbook, enrolled, holdout=False, churned=6)
    enrolments(playbook, held_out, holdout=True, churned=12)
    enrolments(playbook, [make_customer(owner=csm) for _ in range(5)], holdout=False, churned=0, days_ago=3)

    response = client_for(manager).get(PAGE)
    (effect,) = response.context["reports"]["playbooks"]["rows"]
    assert (effect.enrolled, effect.enrolled_churned, effect.holdout, effect.holdout_churned) == (40, 6, 30, 12)
    assert effect.started == 75  # the 5 enrolments of 3 days ago are not matured yet
    assert effect.enough_data and effect.averted_points == pytest.approx(40.0 - 15.0)
    low, high = newcombe_interval(12, 30, 6, 40)
    assert effect.interval == pytest.approx((100 * low, 100 * high))
    assert effect.verdict == "less churn than the holdout"
    html = section(response.content.decode(), "cs-playbooks")
    assert bars(html) == 2  # enrolled and holdout
    whiskers = re.findall(r'<path class="cs-whisker"[^>]*><title>(.*?)</title>', html)
    enrolled_low, enrolled_high = wilson_interval(6, 40)
    assert whiskers[0] == f"Win back · enrolled: {100 * enrolled_low:.1f}% to {100 * enrolled_high:.1f}%"
    assert len(whiskers) == 2
    assert f"{100 * low:.1f} to {100 * high:.1f} pts" in html and "25.0 pts" in html
    assert "not enough data yet" not in html


def test_below_the_minimum_the_page_says_not_enough_data_yet_with_the_sample_sizes(make_customer, csm, manager):
    playbook = Playbook.objects.create(name="Win back", holdout_share=0.2)
    Playbook.objects.create(name="No holdout", holdout_share=0.0)
    enrolments(playbook, [make_customer(owner=csm) for _ in range(40)], holdout=False, churned=4)
    enrolments(playbook, [make_customer(owner=csm) for _ in range(MIN_MATURED_PER_GROUP - 1)], holdout=True, churned=9)

    response = client_for(manager).get(PAGE)
    rows = {effect.name: effect for effect in response.context["reports"]["playbooks"]["rows"]}
    assert not rows["Win back"].enough_data and rows["Win back"].interval is not None
    html = section(response.content.decode(), "cs-playbooks")
    assert f"not enough data yet (n=40 enrolled, {MIN_MATURED_PER_GROUP - 1} holdout; needs 30 each)" in html
    assert "no holdout group: give the playbook a holdout share to measure it" in html
    assert bars(html) == 0 and "None" not in html


# --- Interval math ------------------------------------------------------------------------------


def test_wilson_interval_matches_the_formula_worked_by_hand_and_published_values():
    # 0 of 20: the interval is [0, z²/(n + z²)] = [0, 3.8415/23.8415].
    z = 1.959963984540054
    assert wilson_interval(0, 20) == pytest.approx((0.0, z * z / (20 + z * z)))
    # 10 of 20 (p = 0.5): centre 0.5, half-width z·sqrt(0.25/20 + z²/1600) / (1 + z²/20).
    half = z * math.sqrt(0.25 / 20 + z * z / 1600) / (1 + z * z / 20)
    assert wilson_interval(10, 20) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson_interval(10, 20) == pytest.approx((0.2993, 0.7007), abs=5e-5)
    # Newcombe (1998), single proportion: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)


def test_newcombe_interval_of_a_difference_matches_the_published_examples():
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # method 10 (hybrid score): 56/70 - 48/80, 9/10 - 3/10 and 5/56 - 0/29.
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert newcombe_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    assert newcombe_interval(5, 56, 0, 29) == pytest.approx((-0.0381, 0.1926), abs=5e-5)


# --- Cost, links, the playbook report -----------------------------------------------------------


def queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(PAGE).status_code == 200
    return len(captured)


@pytest.mark.parametrize("role", ["csm", "manager"])
def test_the_page_costs_the_same_queries_whatever_the_size_of_the_book(request, make_customer, make_user, role):
    user = request.getfixturevalue(role)
    client = client_for(user)
    playbook = Playbook.objects.create(name="Win back", holdout_share=0.5)

    def grow(count: int) -> None:
        for n in range(count):
            owner = user if role == "csm" else make_user("csm")
            customer = make_customer(owner=owner, plan=f"Plan {n % 5}", churn_risk=Decimal(n % 10) / 10)
            Intervention.objects.create(customer=customer, type=f"Type {n % 4}", due_date=timezone.now())
            enrolments(playbook, [customer], holdout=n % 2 == 0, churned=n % 3 == 0)

    grow(3)
    client.get(PAGE)
    few = queries(client)
    grow(30)
    assert queries(client) == few
    # Counted by the batch, a manager's page reads the snapshot instead of the customers; before
    # it, the read of the snapshot finds nothing and the book is counted live (one more query).
    portfolio_snapshot_take()
    counted = queries(client)
    grow(30)
    portfolio_snapshot_take()
    assert queries(client) == counted == few - (role == "manager")
    assert counted <= 15


def test_the_page_is_linked_from_the_sidebar_and_the_home(csm):
    client = client_for(csm)
    home = client.get("/admin/").content.decode()
    assert home.count(f'href="{reverse("admin:reports")}"') == 2
    apps = client.get(reverse("admin:apps")).content.decode()
    assert f'<a href="{PAGE}">Reports</a>' in apps
    sidebar = client.get(reverse("admin:interventions_intervention_changelist")).content.decode()
    assert 'id="nav-sidebar"' in sidebar and f'<a href="{PAGE}">Reports</a>' in sidebar


def test_a_user_without_a_role_gets_no_figures(make_user, make_customer):
    make_customer(name="Initech", plan="Secret plan")
    response = client_for(make_user(role=None)).get(PAGE)
    assert response.status_code == 200 and response.context["reports"] is None
    assert "Secret plan" not in response.content.decode()


def test_the_playbook_report_reads_in_words_not_keys_or_none(make_customer, csm, manager):
    playbook = Playbook.objects.create(name="Win back", intervention_type="Executive Check-in", holdout_share=0.5)
    enrolments(playbook, [make_customer(owner=csm)], holdout=False, churned=0, days_ago=2)
    html = client_for(manager).get(reverse("admin:playbooks_playbook_report")).content.decode()
    headers = re.findall(r"<th>(.*?)</th>", html)
    assert headers[:4] == ["Playbook", "Enrolled", "Held out", "Completed"]
    assert "Churn, holdout" in headers and "Intervention type" in headers
    assert not [h for h in headers if "_" in h]
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert "None" not in cells and "not enough data yet" in cells
    first = cells[cells.index("Win back") :][:10]
    assert first[:4] == ["Win back", "1", "0", "100%"]
    # No step ran, no holdout to compare with: unknown, not a measured 0 % or $0.
    assert first[4] == "not enough data yet" and first[-1] == "not enough data yet"


# --- GET /api/interventions/analytics, traced to rows as docs/reports.md describes -------------


def test_intervention_analytics_fields_are_the_documented_aggregates_of_the_rows(book, csm, api_for, settings):
    settings.INTERVENTION_COST = 100.0
    Intervention.objects.filter(type="Executive Check-in", outcome="succeeded").update(revenue_impact=Decimal("900"))
    Intervention.objects.filter(type="Payment Recovery", outcome="succeeded").update(revenue_impact=Decimal("300"))
    answer = api_for(csm).get("/api/interventions/analytics").json()

    # The CSM's retention work (logged touches left out): rows 0-4 of the book's work.
    work = Intervention.objects.filter(customer__owner=csm, activity="")
    completed = work.filter(status="completed")
    succeeded = completed.filter(outcome="succeeded")
    saved = sum(row.revenue_impact or 0 for row in succeeded)
    costs = work.count() * 100.0
    assert answer["overall_metrics"] == {
        "total_interventions": work.count(),
        "completed_interventions": completed.count(),
        "success_rate": round(100 * succeeded.count() / completed.count()),  # a completed row without outcome fails
        "estimated_revenue_saved": round(saved),
        "estimated_costs": round(costs),
        "roi_percentage": round(100 * (float(saved) - costs) / costs),
    }
    assert answer["overall_metrics"]["roi_percentage"] == 50  # (900 - 600) / 600: 6 rows at $100, open ones too

    by_type = {row["type"]: row for row in answer["success_rates_by_type"]}
    training = work.filter(type="Product Training")
    assert by_type["Product Training"]["total_interventions"] == training.count() == 3
    # ÷ every row of the type (open and cancelled too), not ÷ decided: 0 of 3.
    assert by_type["Product Training"]["success_rate"] == 0.0
    check_in = work.filter(type="Executive Check-in")
    assert by_type["Executive Check-in"]["success_rate"] == round(100 * 1 / check_in.count(), 1) == 33.3
    assert by_type["Executive Check-in"]["avg_cost_savings"] == 900

    high_risk = Customer.objects.filter(owner=csm, is_active=True, churn_risk__gte=Decimal("0.8"))
    covered = [c for c in high_risk if c.interventions.filter(status__in=["pending", "active", "in_progress"]).exists()]
    assert answer["retention_analysis"]["high_risk_customers"] == high_risk.count() == 2
    assert answer["retention_analysis"]["high_risk_with_interventions"] == len(covered) == 1
    assert answer["retention_analysis"]["intervention_coverage"] == 50


def test_mean_time_to_complete_counts_completed_rows_only_and_a_negative_span_as_none(make_customer, csm, api_for):
    customer = make_customer(owner=csm)
    now = timezone.now()
    spans = [
        (now - dt.timedelta(days=10), now - dt.timedelta(days=6)),  # 4 days
        (now - dt.timedelta(days=9), now - dt.timedelta(days=1)),  # 8 days
        (now - dt.timedelta(days=2), now - dt.timedelta(days=5)),  # completed "before" created: 0
    ]
    for created, done in spans:
        row = Intervention.objects.create(customer=customer, type="Onboarding", status="completed", completed_at=done)
        Intervention.objects.filter(pk=row.pk).update(created_at=created)  # auto_now_add on create
    # Neither an open row nor a completed one without its time counts.
    Intervention.objects.create(customer=customer, type="Onboarding", status="active")
    Intervention.objects.create(customer=customer, type="Onboarding", status="completed")
    answer = api_for(csm).get("/api/interventions/analytics").json()
    row = next(row for row in answer["success_rates_by_type"] if row["type"] == "Onboarding")
    assert row["total_interventions"] == 5
    assert row["avg_time_to_complete"] == 4  # (4 + 8 + 0) / 3 days
