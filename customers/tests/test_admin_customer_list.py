"""The admin customer list's filters: the plans a user may pick are their portfolio's, read by a
loose index scan (no DISTINCT over the book), and the page costs a fixed number of queries."""

import datetime as dt
import html
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import Customer
from customers.selectors import customer_plans

CUSTOMERS = "/admin/customers/customer/"
RENEWALS = "/admin/customers/renewal/"
PLAN_LINK = re.compile(r'href="\?plan=([^"&]*)"')


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _plan_choices(html: str) -> list[str]:
    return PLAN_LINK.findall(html)


@pytest.fixture
def book(make_customer, csm, other_csm):
    make_customer(owner=csm, plan="Pro")
    make_customer(owner=csm, plan="Basic")
    make_customer(owner=csm, plan="Basic")
    make_customer(owner=csm, plan="Legacy", is_active=False)
    make_customer(owner=other_csm, plan="Enterprise")
    make_customer(owner=None, plan="Starter")
    make_customer(owner=None, plan="")


@pytest.mark.django_db
def test_customer_plans_are_the_portfolios_plans_in_order(book, csm, other_csm, manager):
    assert customer_plans(user=manager) == ["", "Basic", "Enterprise", "Legacy", "Pro", "Starter"]
    assert customer_plans(user=csm) == ["Basic", "Legacy", "Pro"]
    assert customer_plans(user=csm, active_only=True) == ["Basic", "Pro"]
    assert customer_plans(user=other_csm) == ["Enterprise"]


@pytest.mark.django_db
def test_customer_plans_of_an_empty_portfolio_are_none(book, make_user):
    assert customer_plans(user=make_user("csm")) == []


@pytest.mark.django_db
def test_the_plan_filter_offers_the_csms_plans_and_filters(book, csm):
    client = _signed_in(csm)

    page = client.get(CUSTOMERS).content.decode()
    filtered = client.get(CUSTOMERS, {"plan": "Basic"})

    assert _plan_choices(page) == ["Basic", "Legacy", "Pro"]
    assert [c.plan for c in filtered.context["cl"].result_list] == ["Basic", "Basic"]


@pytest.mark.django_db
def test_the_plan_filter_offers_a_manager_every_plan(book, manager):
    page = _signed_in(manager).get(CUSTOMERS).content.decode()

    assert _plan_choices(page) == ["", "Basic", "Enterprise", "Legacy", "Pro", "Starter"]


@pytest.mark.django_db
def test_the_renewals_plan_filter_offers_active_customers_plans(book, csm):
    page = _signed_in(csm).get(RENEWALS).content.decode()

    assert _plan_choices(page) == ["Basic", "Pro"]


@pytest.mark.django_db
def test_the_signup_filter_narrows_to_recent_signups(make_customer, manager):
    recent = make_customer(signup_date=timezone.now() - dt.timedelta(days=2))
    make_customer(signup_date=timezone.now() - dt.timedelta(days=400))
    client = _signed_in(manager)
    past_week = re.search(r'href="(\?signup_date__gte=[^"]*)"[^>]*>Past 7 days', client.get(CUSTOMERS).content.decode())

    response = client.get(CUSTOMERS + html.unescape(past_week.group(1)))

    assert [c.pk for c in response.context["cl"].result_list] == [recent.pk]


@pytest.mark.parametrize("role", ["csm", "manager"])
@pytest.mark.django_db
def test_the_customer_list_reads_no_distinct_over_the_book(book, role, csm, manager, django_assert_num_queries):
    client = _signed_in(csm if role == "csm" else manager)
    client.get(CUSTOMERS)  # session, role and content types cached as on any later view
    expected = {"csm": 10, "manager": 12}[role]

    with CaptureQueriesContext(connection) as captured, django_assert_num_queries(expected):
        response = client.get(CUSTOMERS)

    assert response.status_code == 200
    sql = [q["sql"] for q in captured.captured_queries]
    # Neither the plan nor the owner filter reads the book's distinct values.
    assert not [s for s in sql if "DISTINCT" in s and '"customers"' in s]
    assert not [s for s in sql if "DATE_TRUNC" in s.upper()]


@pytest.mark.django_db
def test_the_owner_filter_offers_the_owners_of_customers(book, csm, other_csm, manager, make_user):
    nobody = make_user("csm")  # owns no customer
    client = _signed_in(manager)

    owners = re.findall(r'href="\?owner__id__exact=(\d+)"', client.get(CUSTOMERS).content.decode())
    Customer.objects.filter(owner=other_csm).update(owner=None)  # their only customer handed back
    after = re.findall(r'href="\?owner__id__exact=(\d+)"', client.get(CUSTOMERS).content.decode())

    assert sorted(int(pk) for pk in owners) == sorted([csm.pk, other_csm.pk])
    assert [int(pk) for pk in after] == [csm.pk]
    assert nobody.pk not in {int(pk) for pk in owners}
