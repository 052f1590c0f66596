"""customer_scores_set writes many scores at once (COPY + UPDATE FROM on PostgreSQL when large)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import Customer
from customers.services import COPY_THRESHOLD, customer_scores_set


@pytest.mark.django_db
@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 50])
def test_scores_are_written_exactly(count):
    now = timezone.now()
    Customer.objects.bulk_create(
        [Customer(name=f"C{i}", email=f"c{i}@example.com", signup_date=now) for i in range(count + 2)]
    )
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    targets, untouched = ids[:count], ids[count:]
    scores = [(pk, Decimal(f"0.{pk % 10000:04d}"), pk % 101) for pk in targets]
    assert customer_scores_set(scores=scores) == count
    stored = dict(Customer.objects.filter(pk__in=targets).values_list("pk", "churn_risk"))
    assert stored == {pk: risk for pk, risk, _ in scores}
    health = dict(Customer.objects.filter(pk__in=targets).values_list("pk", "health_score"))
    assert health == {pk: h for pk, _, h in scores}
    assert set(Customer.objects.filter(pk__in=untouched).values_list("churn_risk", flat=True)) == {Decimal("0")}


@pytest.mark.django_db
def test_unchanged_scores_are_not_rewritten_on_postgresql():
    from django.db import connection

    now = timezone.now()
    Customer.objects.bulk_create(
        [Customer(name=f"C{i}", email=f"c{i}@example.com", signup_date=now) for i in range(COPY_THRESHOLD + 10)]
    )
    scores = [(pk, Decimal("0.5000"), 40) for pk in Customer.objects.values_list("pk", flat=True)]
    assert customer_scores_set(scores=scores) == len(scores)
    again = customer_scores_set(scores=scores)
    assert again == (0 if connection.vendor == "postgresql" else len(scores))
    assert set(Customer.objects.values_list("churn_risk", "health_score")) == {(Decimal("0.5000"), 40)}
