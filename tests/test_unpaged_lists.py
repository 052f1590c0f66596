"""Lists requested without `page`/`per_page` return every row up to API_UNPAGED_MAX (the React app
reads no paging headers); explicit paging is unchanged. Query counts are pinned per list."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import Customer, UserSession
from integrations.models import Integration
from tests.helpers import make_alert, make_intervention

ROWS = 130  # more than API_PAGE_SIZE (100): a first page alone would cut the list


def _bulk_customers(owner, n: int) -> list[Customer]:
    now = timezone.now()
    return Customer.objects.bulk_create(
        Customer(
            name=f"Bulk {i}",
            email=f"bulk{i}@example.com",
            company=f"Bulk Co {i}",
            plan="Pro",
            mrr="100.00",
            signup_date=now - dt.timedelta(days=100),
            health_score=50,
            churn_risk="0.3000",
            support_tickets=0,
            feature_usage={},
            owner=owner,
        )
        for i in range(n)
    )


def _get(client, url: str) -> tuple[object, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return response, len(queries)


@pytest.mark.django_db
def test_unpaged_customer_list_returns_every_row(manager, api_for):
    customers = _bulk_customers(None, ROWS)
    client = api_for(manager)
    client.get("/api/customers")  # warm per-process caches
    response, queries = _get(client, "/api/customers")
    body = response.json()
    assert [row["id"] for row in body] == sorted(c.pk for c in customers)
    assert response["X-Total-Count"] == str(ROWS)
    assert "Link" not in response  # one page holds them all
    # user + role, the count, the rows
    assert queries == 3


@pytest.mark.django_db
def test_unpaged_list_is_capped_and_says_so(manager, api_for, settings):
    settings.API_UNPAGED_MAX = 50
    customers = _bulk_customers(None, ROWS)
    response, _ = _get(api_for(manager), "/api/customers")
    assert [row["id"] for row in response.json()] == sorted(c.pk for c in customers)[:50]
    assert response["X-Total-Count"] == str(ROWS)
    assert 'rel="next"' in response["Link"] and "page=2" in response["Link"] and 'rel="last"' in response["Link"]


@pytest.mark.django_db
def test_explicit_paging_is_unchanged(manager, api_for):
    customers = _bulk_customers(None, ROWS)
    ids = sorted(c.pk for c in customers)
    client = api_for(manager)
    first = client.get("/api/customers?page=1")
    assert [row["id"] for row in first.json()] == ids[:100]  # API_PAGE_SIZE
    assert first["X-Total-Count"] == str(ROWS) and 'rel="next"' in first["Link"]
    second = client.get("/api/customers?page=2&per_page=100")
    assert [row["id"] for row in second.json()] == ids[100:]
    sized = client.get("/api/customers?per_page=7")
    assert [row["id"] for row in sized.json()] == ids[:7]


@pytest.mark.django_db
def test_unpaged_intervention_alert_session_and_integration_lists(manager, make_customer, api_for):
    customer = make_customer()
    now = timezone.now()
    for _ in range(ROWS):
        make_intervention(customer)
        make_alert(customer)
    UserSession.objects.bulk_create(
        UserSession(customer=customer, started_at=now - dt.timedelta(minutes=i)) for i in range(ROWS)
    )
    Integration.objects.bulk_create(Integration(name=f"Integration {i}", type="crm") for i in range(ROWS))
    client = api_for(manager)
    expected = {
        "/api/interventions": 3,
        "/api/alerts": 3,
        f"/api/customers/{customer.pk}/sessions": 4,
        "/api/integrations": 3,
    }
    counted = {}
    for url in expected:
        client.get(url)  # warm per-process caches
        response, counted[url] = _get(client, url)
        assert len(response.json()) == ROWS, url
        assert response["X-Total-Count"] == str(ROWS), url
        assert "Link" not in response, url
    assert counted == expected


@pytest.mark.django_db
def test_unpaged_timeline_returns_every_event(manager, make_customer, api_for):
    customer = make_customer()
    now = timezone.now()
    UserSession.objects.bulk_create(
        UserSession(customer=customer, started_at=now - dt.timedelta(minutes=i)) for i in range(ROWS)
    )
    client = api_for(manager)
    url = f"/api/customers/{customer.pk}/timeline"
    client.get(url)  # warm per-process caches
    response, queries = _get(client, url)
    assert len(response.json()) == ROWS and "Link" not in response
    assert queries == 9  # the user with its role, the customer, one per event source
    paged = client.get(f"{url}?per_page=20")
    assert len(paged.json()) == 20 and 'rel="next"' in paged["Link"]
