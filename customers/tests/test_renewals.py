"""Contracts (renewal date, ARR) from subscription history or by hand, the retained-revenue
forecast and revenue retention, checked against values computed by hand."""

import datetime as dt
import random
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.utils import timezone

from customers.contracts import customer_contract_set, customer_contracts_refresh
from customers.history.services import import_history
from customers.models import ContractSource, Customer, Subscription
from customers.renewals import (
    RenewalTotals,
    renewal_overview,
    renewal_totals,
    renewals_queryset,
    retained_revenue_forecast,
    revenue_retention,
    stored_renewal_totals,
)
from customers.services import renewal_count_take

pytestmark = pytest.mark.django_db


def _write(path, text: str):
    path.write_text(text.strip() + "\n")
    return path


def _imported(tmp_path, subscriptions: str):
    customers = _write(
        tmp_path / "customers.csv",
        """
id,name,email,signup_date
c1,One,one@example.com,2024-01-01
c2,Two,two@example.com,2024-01-01
c3,Three,three@example.com,2024-01-01
""",
    )
    subs = _write(tmp_path / "subscriptions.csv", subscriptions)
    result = import_history(paths=[customers, subs])
    assert result.files[-1].written, result.files[-1].problems
    return {c.external_id: c for c in Customer.objects.all()}


def test_the_history_import_derives_each_customers_contract(tmp_path):
    today = timezone.localdate()
    start = today - dt.timedelta(days=100)
    ends = today + dt.timedelta(days=30)
    customers = _imported(
        tmp_path,
        f"""
id,customer,plan,mrr,start_date,end_date,status,bill_period_months
sub_1,c1,Basic,100,2024-01-01,{start},ended,12
sub_1,c1,Pro,120,{start},,active,12
sub_2,c2,Pro,200,{today - dt.timedelta(days=10)},{ends},active,
sub_3,c2,Add-on,50,{today - dt.timedelta(days=5)},,active,
sub_4,c3,Pro,300,2024-01-01,{today - dt.timedelta(days=3)},canceled,1
""",
    )
    one, two, three = customers["c1"], customers["c2"], customers["c3"]
    # An open annual version: the first anniversary of its start ahead of today.
    assert (one.renewal_date, one.contract_value, one.bill_period_months) == (
        start + relativedelta(months=12),
        Decimal("1440.00"),
        12,
    )
    # ARR counts both live subscriptions; the renewal is the one period end the source gave.
    assert (two.renewal_date, two.contract_value, two.bill_period_months) == (ends, Decimal("3000.00"), None)
    # Canceled: no contract left.
    assert (three.renewal_date, three.contract_value) == (None, Decimal("0.00"))
    assert {c.contract_source for c in customers.values()} == {ContractSource.SUBSCRIPTIONS}


def test_a_hand_edit_stands_until_a_newer_subscription_fact_arrives(tmp_path):
    today = timezone.localdate()
    start = today - dt.timedelta(days=100)
    text = f"""
id,customer,plan,mrr,start_date,end_date,status,bill_period_months
sub_1,c1,Pro,120,{start},,active,12
"""
    one = _imported(tmp_path, text)["c1"]
    edited_at = timezone.now() - dt.timedelta(days=20)
    customer_contract_set(
        customer=one, renewal_date=dt.date(2031, 5, 1), contract_value=Decimal("9999.00"), now=edited_at
    )

    # The same (older) facts imported again, and a refresh, leave the edit alone.
    import_history(paths=[_write(tmp_path / "subscriptions.csv", text)])
    assert customer_contracts_refresh(customer_ids=[one.pk]) == 0
    one.refresh_from_db()
    assert (one.renewal_date, one.contract_value, one.contract_source) == (
        dt.date(2031, 5, 1),
        Decimal("9999.00"),
        ContractSource.MANUAL,
    )

    # A plan change after the edit is newer news: the contract follows the history again.
    changed = today - dt.timedelta(days=10)
    import_history(
        paths=[
            _write(
                tmp_path / "subscriptions.csv",
                f"""
id,customer,plan,mrr,start_date,end_date,status,bill_period_months
sub_1,c1,Pro,120,{start},{changed},ended,12
sub_1,c1,Scale,300,{changed},,active,12
""",
            )
        ]
    )
    one.refresh_from_db()
    assert (one.renewal_date, one.contract_value, one.contract_source) == (
        changed + relativedelta(months=12),
        Decimal("3600.00"),
        ContractSource.SUBSCRIPTIONS,
    )


def test_renewals_are_scoped_and_ordered_soonest_first(make_customer, csm, other_csm):
    today = timezone.localdate()
    later = make_customer(owner=csm, renewal_date=today + dt.timedelta(days=50))
    soon = make_customer(owner=csm, renewal_date=today + dt.timedelta(days=5))
    unknown = make_customer(owner=csm)
    make_customer(owner=csm, renewal_date=today + dt.timedelta(days=7), is_active=False)
    make_customer(owner=other_csm, renewal_date=today + dt.timedelta(days=3))
    assert list(renewals_queryset(user=csm)) == [soon, later, unknown]
    assert list(renewals_queryset(user=csm, days=30)) == [soon]


def test_the_forecast_matches_the_hand_computed_expectation(make_customer, csm, other_csm):
    today = dt.date(2026, 3, 10)
    # March: ten customers of 100 a month, each with a 30% churn probability.
    for _ in range(10):
        make_customer(owner=csm, mrr=Decimal(100), churn_risk=Decimal("0.3"), renewal_date=dt.date(2026, 3, 20))
    # April: one customer of 300 at 40%.
    make_customer(owner=csm, mrr=Decimal(300), churn_risk=Decimal("0.4"), renewal_date=dt.date(2026, 4, 2))
    # Outside: already renewed this month, another portfolio, an inactive customer.
    make_customer(owner=csm, mrr=Decimal(999), renewal_date=dt.date(2026, 3, 1))
    make_customer(owner=other_csm, mrr=Decimal(999), renewal_date=dt.date(2026, 3, 20))
    make_customer(owner=csm, mrr=Decimal(999), renewal_date=dt.date(2026, 3, 20), is_active=False)

    march, april, may = retained_revenue_forecast(user=csm, months=3, today=today)

    # Mean 10 * 100 * 0.7 = 700; variance 10 * 100^2 * 0.3 * 0.7 = 21000, sd 144.914;
    # z(90%) = 1.644854, half-width 238.362.
    assert (march.month, march.customers, march.mrr_up) == (dt.date(2026, 3, 1), 10, Decimal(1000))
    assert (march.expected, march.low, march.high, march.at_risk) == (
        Decimal("700.00"),
        Decimal("461.64"),
        Decimal("938.36"),
        Decimal("300.00"),
    )
    # Mean 300 * 0.6 = 180; sd 300 * sqrt(0.24) = 146.969, half-width 241.743: clipped to [0, 300].
    assert (april.customers, april.expected, april.low, april.high) == (
        1,
        Decimal("180.00"),
        Decimal("0.00"),
        Decimal("300.00"),
    )
    assert (may.month, may.customers, may.expected, may.low, may.high) == (
        dt.date(2026, 5, 1),
        0,
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("0.00"),
    )


def _version(customer: Customer, external_id: str, mrr: int, start: str, end: str | None, status: str) -> None:
    noon = dt.time(12, tzinfo=dt.UTC)
    Subscription.objects.create(
        customer=customer,
        external_id=external_id,
        mrr=Decimal(mrr),
        started_at=dt.datetime.combine(dt.date.fromisoformat(start), noon),
        ended_at=dt.datetime.combine(dt.date.fromisoformat(end), noon) if end else None,
        status=status,
    )


def test_revenue_retention_matches_the_hand_computed_expectation(make_customer, csm, other_csm):
    x, y, z, w, v = (make_customer(owner=csm) for _ in range(5))
    _version(x, "x", 100, "2025-06-01", None, "active")  # steady
    _version(y, "y", 200, "2025-01-01", "2026-01-20", "canceled")  # churns in January
    _version(z, "z", 300, "2025-05-01", "2026-01-10", "ended")  # expands by 100 in January
    _version(z, "z", 400, "2026-01-10", None, "active")
    _version(w, "w", 500, "2025-05-01", "2026-02-05", "ended")  # contracts by 250 in February
    _version(w, "w", 250, "2026-02-05", None, "active")
    _version(v, "v", 150, "2025-12-25", "2026-01-15", "ended")
    Subscription.objects.filter(external_id="v").update(status="trialing")  # a trial is not revenue
    _version(v, "v", 150, "2026-01-15", None, "active")  # new business in January
    _version(make_customer(owner=other_csm), "r", 1000, "2025-01-01", "2026-01-05", "canceled")

    january, february = revenue_retention(user=csm, months=2, today=dt.date(2026, 3, 15))

    # January: start 100 + 200 + 300 + 500 = 1100; churned 200; expansion 100.
    assert (january.month, january.start_mrr, january.churned, january.contraction, january.expansion) == (
        dt.date(2026, 1, 1),
        Decimal(1100),
        Decimal(200),
        Decimal(0),
        Decimal(100),
    )
    assert (january.grr, january.nrr) == (900 / 1100, 1000 / 1100)
    # February: start 100 + 400 + 500 + 150 = 1150; contraction 250.
    assert (february.start_mrr, february.churned, february.contraction, february.expansion) == (
        Decimal(1150),
        Decimal(0),
        Decimal(250),
        Decimal(0),
    )
    assert (february.grr, february.nrr) == (900 / 1150, 900 / 1150)
    assert (january.grr_percent, february.nrr_percent) == ("81.8%", "78.3%")


def _reference_retention(customers: list[Customer], months: int, today: dt.date) -> list[tuple]:
    """Revenue retention the slow, obvious way: each customer's MRR at each month boundary from
    their versions, compared month by month in Python."""
    zone = timezone.get_current_timezone()
    bounds = [today.replace(day=1) - relativedelta(months=months - n) for n in range(months + 1)]
    instants = [dt.datetime.combine(day, dt.time(), tzinfo=zone) for day in bounds]
    versions = {
        c.pk: [(s.mrr, s.started_at, s.ended_at) for s in c.subscriptions.exclude(status="trialing")] for c in customers
    }

    def mrr_at(items, at):
        return sum((m for m, start, end in items if start <= at and (end is None or end > at)), Decimal("0.00"))

    result = []
    for n in range(months):
        start_mrr = churned = contraction = expansion = Decimal("0.00")
        for items in versions.values():
            before, after = mrr_at(items, instants[n]), mrr_at(items, instants[n + 1])
            if before <= 0:
                continue
            start_mrr += before
            if after <= 0:
                churned += before
            elif after < before:
                contraction += before - after
            else:
                expansion += after - before
        kept = start_mrr - churned - contraction
        grr = float(kept / start_mrr) if start_mrr else None
        nrr = float((kept + expansion) / start_mrr) if start_mrr else None
        result.append((bounds[n], start_mrr, churned, contraction, expansion, grr, nrr))
    return result


def _random_book(rng: random.Random, owner, make_customer, count: int) -> list[Customer]:
    """Customers whose subscriptions start, change plan up and down, lapse, come back, overlap
    (two lines at once) and sometimes begin on a trial; some changes fall exactly on a month's
    first instant, where a version that ends is no longer in force and one that starts is."""
    zone = timezone.get_current_timezone()
    origin = dt.datetime(2025, 1, 1, tzinfo=zone)
    customers = []
    for c in range(count):
        customer = make_customer(owner=owner)
        customers.append(customer)
        for line in range(rng.choice([0, 1, 1, 1, 2])):
            at = origin + dt.timedelta(days=rng.randrange(0, 300))
            if rng.random() < 0.3:  # on a month boundary
                at = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            status = "trialing" if rng.random() < 0.2 else "active"
            for _ in range(rng.randrange(1, 7)):
                length = dt.timedelta(days=rng.randrange(5, 120), hours=rng.randrange(0, 24))
                end = at + length
                if rng.random() < 0.3:
                    end = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + relativedelta(months=1)
                last = rng.random() < 0.15
                Subscription.objects.create(
                    customer=customer,
                    external_id=f"r{c}-{line}",
                    mrr=Decimal(rng.choice([0, 4999, 10000, 12345, 25000, 99999])) / 100,
                    started_at=at,
                    ended_at=None if last else end,
                    status=status if last else rng.choice([status, "ended", "canceled", "past_due"]),
                )
                if last:
                    break
                status = "active"
                # Renewed at once, or back after a gap, or (rarely) overlapping the old version.
                at = end + rng.choice([dt.timedelta(0), dt.timedelta(0), dt.timedelta(days=40), -dt.timedelta(days=3)])
    return customers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_revenue_retention_matches_a_reference_computation_on_a_random_book(
    seed, make_customer, csm, other_csm, manager
):
    rng = random.Random(seed)
    mine = _random_book(rng, csm, make_customer, 25)
    theirs = _random_book(rng, other_csm, make_customer, 10)
    today = dt.date(2026, 3, 15)

    def fields(rows):
        return [(r.month, r.start_mrr, r.churned, r.contraction, r.expansion, r.grr, r.nrr) for r in rows]

    expected_mine = _reference_retention(mine, 16, today)
    assert fields(revenue_retention(user=csm, months=16, today=today)) == expected_mine
    assert fields(revenue_retention(user=manager, months=16, today=today)) == _reference_retention(
        mine + theirs, 16, today
    )
    # The book is varied enough for the comparison to mean something.
    assert sum(1 for row in expected_mine if row[1]) >= 10
    assert all(any(row[k] for row in expected_mine) for k in (2, 3, 4))


def test_revenue_retention_takes_one_query_for_all_months(make_customer, csm, django_assert_num_queries):
    _version(make_customer(owner=csm), "q", 100, "2025-06-01", None, "active")
    # The user's role (for the scope), then every month's figures at once.
    with django_assert_num_queries(2):
        rows = revenue_retention(user=csm, months=12, today=dt.date(2026, 3, 15))
    assert rows[-1].start_mrr == Decimal("100.00")


# --- The daily count ----------------------------------------------------------------------------


def _contracts(rng: random.Random, customers: list[Customer], today: dt.date) -> None:
    """Renewal dates from before today to beyond the forecast's twelve months (some on a month's
    first or last day, some none), MRR, probabilities and a few inactive customers."""
    for customer in customers:
        renewal = today + dt.timedelta(days=rng.randrange(-20, 400))
        if rng.random() < 0.2:
            renewal = renewal.replace(day=1) - dt.timedelta(days=rng.choice([0, 1]))
        Customer.objects.filter(pk=customer.pk).update(
            renewal_date=None if rng.random() < 0.1 else renewal,
            mrr=Decimal(rng.randrange(0, 500_000)) / 100,
            contract_value=None if rng.random() < 0.1 else Decimal(rng.randrange(0, 6_000_000)) / 100,
            churn_risk=Decimal(rng.randrange(0, 10_001)) / 10_000,
            is_active=rng.random() < 0.85,
        )


@pytest.mark.parametrize("seed", [1, 2])
def test_the_daily_count_equals_a_live_count_for_every_user(seed, make_customer, csm, other_csm, manager):
    rng = random.Random(seed)
    now = dt.datetime(2026, 3, 15, 12, tzinfo=dt.UTC)
    today = timezone.localdate(now)
    book = [
        *_random_book(rng, csm, make_customer, 15),
        *_random_book(rng, other_csm, make_customer, 10),
        *_random_book(rng, None, make_customer, 5),  # unassigned
    ]
    _contracts(rng, book, today)

    assert renewal_count_take(now=now) == 3  # a row per owner, unassigned included

    def forecast(rows):
        return [(m.month, m.customers, m.mrr_up, m.expected, m.low, m.high, m.at_risk) for m in rows]

    def retention(rows):
        return [(m.month, m.start_mrr, m.churned, m.contraction, m.expansion, m.grr, m.nrr) for m in rows]

    for user in (manager, csm, other_csm):
        stored = renewal_overview(user=user)
        assert stored.counted_at == now
        assert forecast(stored.forecast) == forecast(retained_revenue_forecast(user=user, today=today))
        assert retention(stored.retention) == retention(revenue_retention(user=user, today=today))
        live = renewal_totals(renewals_queryset(user=user))
        assert stored_renewal_totals(user=user) == RenewalTotals(
            count=live.count, mrr=live.mrr, arr=live.arr, at_risk=live.at_risk, counted_at=now
        )
    # A CSM's figures are their portfolio's alone: the two CSMs' and the unassigned add up to the book.
    mine, theirs, book_total = (stored_renewal_totals(user=user) for user in (csm, other_csm, manager))
    unassigned = renewal_totals(Customer.objects.filter(owner=None, is_active=True))
    assert mine.count + theirs.count + unassigned.count == book_total.count
    assert mine.mrr + theirs.mrr + unassigned.mrr == book_total.mrr
    assert 0 < mine.count < book_total.count
    # The book is varied enough for the comparison to mean something.
    overview = renewal_overview(user=manager)
    assert sum(1 for m in overview.forecast if m.customers) >= 6
    assert sum(1 for m in overview.retention if m.start_mrr) >= 6


def test_a_new_count_replaces_the_last_and_the_pages_say_when_it_was_counted(
    make_customer, csm, other_csm, manager, django_assert_num_queries
):
    from django.test import Client

    today = timezone.localdate()
    mine = make_customer(
        owner=csm, mrr=Decimal("100.00"), churn_risk=Decimal("0.5000"), renewal_date=today + dt.timedelta(days=3)
    )
    make_customer(
        owner=other_csm,
        name="Rival",
        mrr=Decimal("900.00"),
        churn_risk=Decimal("0.1000"),
        renewal_date=today + dt.timedelta(days=3),
    )
    as_csm, as_manager = Client(), Client()
    as_csm.force_login(csm)
    as_manager.force_login(manager)

    # Before any count, the pages count now and say nothing about a count.
    page = as_csm.get("/admin/customers/renewal/forecast/")
    assert page.context["counted_at"] is None
    assert "counted by the daily scoring run" not in page.content.decode()

    renewal_count_take()
    renewal_count_take()  # the latest count replaces the one before
    Customer.objects.filter(pk=mine.pk).update(mrr=Decimal("300.00"))  # after the count

    # The forecast page reads the count, scoped: the CSM's month holds their customer only.
    with django_assert_num_queries(7):  # session, user, role, permissions (2), the count, the header
        page = as_csm.get("/admin/customers/renewal/forecast/")
    this_month = page.context["forecast"][0 if (today + dt.timedelta(days=3)).month == today.month else 1]
    assert (this_month.customers, this_month.mrr_up, this_month.expected) == (1, Decimal("100.00"), Decimal("50.00"))
    assert "as counted by the daily scoring run" in page.content.decode()
    with django_assert_num_queries(8):  # as above; a manager's header checks two settings
        page = as_manager.get("/admin/customers/renewal/forecast/")
    both = page.context["forecast"][0 if (today + dt.timedelta(days=3)).month == today.month else 1]
    assert (both.customers, both.mrr_up, both.expected) == (2, Decimal("1000.00"), Decimal("860.00"))

    # The whole list's totals are the count's; a filtered list's are counted now.
    page = as_csm.get("/admin/customers/renewal/")
    assert page.context["renewal_totals"].mrr == Decimal("100.00")
    assert page.context["renewal_totals"].counted_at is not None
    assert "as counted by the daily scoring run" in page.content.decode()
    page = as_csm.get("/admin/customers/renewal/?within=30")
    assert (page.context["renewal_totals"].mrr, page.context["renewal_totals"].counted_at) == (Decimal("300.00"), None)
    page = as_manager.get("/admin/customers/renewal/")
    assert (page.context["renewal_totals"].count, page.context["renewal_totals"].mrr) == (2, Decimal("1000.00"))
    assert "MRR 1,000.00 · ARR " in page.content.decode()  # grouped for reading


# --- The trigger rule ---------------------------------------------------------------------------


def test_renewal_within_matches_active_customers_renewing_in_the_window(make_customer):
    from playbooks.models import Playbook, TriggerRule
    from playbooks.rules import matching_customers

    today = timezone.localdate()
    inside = make_customer(renewal_date=today + dt.timedelta(days=30))
    today_ = make_customer(renewal_date=today)
    make_customer(renewal_date=today + dt.timedelta(days=31))  # beyond the window
    make_customer(renewal_date=today - dt.timedelta(days=1))  # already passed
    make_customer()  # no renewal date
    make_customer(renewal_date=today + dt.timedelta(days=3), is_active=False)
    playbook = Playbook.objects.create(name="Renewal", steps=[{"type": "wait", "duration": "1d"}])
    rule = TriggerRule(playbook=playbook, kind="renewal_within", params={"days": 30})
    assert matching_customers(rule, customer_ids=None, now=timezone.now()) == sorted([inside.pk, today_.pk])
    assert matching_customers(rule, customer_ids=[inside.pk], now=timezone.now()) == [inside.pk]


@pytest.mark.parametrize("days", [0, -5, "30", True, None, 731])
def test_renewal_within_needs_a_whole_number_of_days(days):
    from core.exceptions import InvalidInputError
    from playbooks.models import Playbook
    from playbooks.services import playbook_create

    with pytest.raises(InvalidInputError) as raised:
        playbook_create(
            data={
                "name": "Renewal",
                "steps": [{"type": "wait", "duration": "1d"}],
                "rules": [{"kind": "renewal_within", "params": {"days": days}}],
            }
        )
    assert raised.value.errors == {"rules": {0: {"params": ["days: a whole number of days from 1 to 730 is required"]}}}
    assert Playbook.objects.count() == 0


def test_the_renewal_reminder_playbook_triggers_on_renewals():
    from playbooks.defaults import seed_default_playbooks
    from playbooks.models import TriggerRule

    seed_default_playbooks()
    rules = TriggerRule.objects.filter(playbook__name="Renewal Reminder")
    assert [(r.kind, r.params) for r in rules] == [("renewal_within", {"days": 60})]


# --- The admin page and its export --------------------------------------------------------------


def test_a_csm_sees_and_exports_only_their_renewals_as_filtered(make_customer, csm, other_csm):
    from django.test import Client

    today = timezone.localdate()
    soon = make_customer(
        owner=csm,
        name="=Soon Ltd",
        mrr=Decimal("1000.00"),
        churn_risk=Decimal("0.2500"),
        contract_value=Decimal("12000.00"),
        renewal_date=today + dt.timedelta(days=10),
    )
    make_customer(owner=csm, renewal_date=today + dt.timedelta(days=100))  # outside 30 days
    make_customer(owner=other_csm, name="Rival", renewal_date=today + dt.timedelta(days=5))
    client = Client()
    client.force_login(csm)

    page = client.get("/admin/customers/renewal/?within=30")
    assert page.status_code == 200
    assert [c.pk for c in page.context["cl"].result_list] == [soon.pk]
    assert page.context["renewal_totals"] == RenewalTotals(
        count=1, mrr=Decimal("1000.00"), arr=Decimal("12000.00"), at_risk=Decimal("250.00"), counted_at=None
    )

    export = client.get("/admin/customers/renewal/export.csv?within=30")
    assert export.status_code == 200
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert lines == [
        "\ufeffcustomer_id,name,company,renewal_date,days_left,plan,mrr,arr,churn_probability,"
        "revenue_at_risk,owner,contract_source",
        f"{soon.pk},'=Soon Ltd,{soon.company},{soon.renewal_date},10,Pro,1000.00,12000.00,0.2500,250.00,"
        f"{csm.username},",
    ]
    assert client.get("/admin/customers/renewal/forecast/").status_code == 200


def test_a_manager_edits_a_contract_by_hand_and_a_csm_may_not(make_customer, csm, manager):
    from django.test import Client

    customer = make_customer(owner=csm)
    url = f"/admin/customers/renewal/{customer.pk}/change/"
    form = {"renewal_date": "2027-02-01", "contract_value": "24000.00", "bill_period_months": "12"}

    as_csm = Client()
    as_csm.force_login(csm)
    assert as_csm.post(url, form).status_code == 403
    customer.refresh_from_db()
    assert (customer.renewal_date, customer.contract_value, customer.contract_source) == (None, None, "")

    as_manager = Client()
    as_manager.force_login(manager)
    assert as_manager.post(url, {**form, "contract_value": "-1"}).status_code == 200  # the form again, with the error
    customer.refresh_from_db()
    assert customer.contract_value is None
    assert as_manager.post(url, form).status_code == 302
    customer.refresh_from_db()
    assert (customer.renewal_date, customer.contract_value, customer.bill_period_months, customer.contract_source) == (
        dt.date(2027, 2, 1),
        Decimal("24000.00"),
        12,
        ContractSource.MANUAL,
    )
