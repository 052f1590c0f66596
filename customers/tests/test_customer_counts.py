"""The customer list's X-Total-Count, and the trigger-kept counts behind it on PostgreSQL."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from customers.models import Customer
from customers.selectors import customer_count


def stored_counts() -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT owner_key, n FROM customer_counts WHERE n > 0")
        return dict(cursor.fetchall())


def true_counts() -> dict[int, int]:
    counts: dict[int, int] = {}
    for owner_id in Customer.objects.values_list("owner_id", flat=True):
        counts[owner_id or 0] = counts.get(owner_id or 0, 0) + 1
    return counts


def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("customer_counts is kept by PostgreSQL triggers; other databases COUNT(*)")


def total(client, query: str = "") -> int:
    response = client.get(f"/api/customers?per_page=2{query}")
    assert response.status_code == 200
    return int(response["X-Total-Count"])


@pytest.mark.django_db
def test_total_count_is_what_the_user_may_see_filtered_or_not(make_customer, csm, other_csm, manager, api_for):
    for _ in range(3):
        make_customer(owner=csm)
    make_customer(owner=csm, is_active=False)
    make_customer(owner=other_csm)
    make_customer(owner=None)
    assert total(api_for(manager)) == 6
    assert total(api_for(csm)) == 4
    assert total(api_for(csm), "&ordering=-churnRisk") == 4  # ordering leaves nobody out
    assert total(api_for(csm), "&isActive=true") == 3
    assert total(api_for(manager), f"&ownerId={other_csm.pk}") == 1
    assert total(api_for(csm), "&search=") == 4  # an empty filter is no filter
    assert customer_count(user=manager) == 6 and customer_count(user=other_csm) == 1


@pytest.mark.django_db(transaction=True)
def test_counts_follow_every_kind_of_write(make_customer, make_user):
    postgresql_only()
    first, second = make_user("csm"), make_user("csm")
    now = timezone.now()
    Customer.objects.bulk_create(
        [Customer(name=f"B{i}", email=f"b{i}@x.io", signup_date=now, owner=first if i % 3 else None) for i in range(30)]
    )
    single = make_customer(owner=second)
    assert stored_counts() == true_counts()

    columns = "name, email, company, plan, mrr, signup_date, health_score, churn_risk, support_tickets,"
    columns += " feature_usage, is_active, created_at, updated_at, owner_id"
    with connection.cursor() as cursor, cursor.copy(f"COPY customers ({columns}) FROM STDIN") as copy:
        for i in range(20):
            copy.write_row((f"C{i}", f"c{i}@x.io", "Co", "Pro", 10, now, 50, 0.1, 0, "{}", True, now, now, second.pk))
    assert stored_counts() == true_counts()

    single.owner = first  # one row moves through save()
    single.save()
    Customer.objects.filter(owner=second).filter(name__startswith="C1").update(owner=None)  # a set moves
    Customer.objects.filter(owner=None).update(health_score=12)  # no owner change: no count change
    assert stored_counts() == true_counts()

    Customer.objects.filter(name__startswith="B2").delete()
    get_user_model().objects.filter(pk=second.pk).delete()  # owner gone: SET_NULL moves the rest
    assert stored_counts() == true_counts()

    with pytest.raises(RuntimeError), transaction.atomic():
        make_customer(owner=first)
        raise RuntimeError("rolled back")
    assert stored_counts() == true_counts()

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE customers CASCADE")
    assert stored_counts() == {} == true_counts()


@pytest.mark.django_db
def test_unfiltered_list_reads_the_counts_not_the_book(make_customer, manager, api_for):
    postgresql_only()
    for _ in range(3):
        make_customer()
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert total(api_for(manager)) == 3
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "customer_counts" in sql and "COUNT(*)" not in sql.upper()
