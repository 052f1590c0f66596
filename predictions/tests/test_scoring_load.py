"""The scoring load on PostgreSQL: read side by side on connections of their own (outside a
transaction), the sessions in ranges of the heap and packed by the database, billing packed — and
the same frames, value for value, as the same reads in turn on one connection and as the plain
COPY path."""

import pandas as pd
import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from customers.models import BillingEvent, UserSession
from demo.generator import generate
from predictions import data
from predictions.ml.features import build_features

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def book():
    if connection.vendor != "postgresql":
        pytest.skip("the packed and side-by-side reads are PostgreSQL's")
    for role in ("admin", "manager", "csm", "viewer"):  # a flush between tests empties the migration's groups
        Group.objects.get_or_create(name=role)
    generate(customers=300, seed=5, as_of=timezone.now().date(), activity_scale=0.5, progress=False)


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns[:2]) + list(frame.columns[2:])).reset_index(drop=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_reads_side_by_side_run_on_backends_of_their_own(book):
    own = backend_pid()
    apart = data._read_all({f"read_{i}": backend_pid for i in range(4)}, side_by_side=True)
    assert own not in apart.values() and len(set(apart.values())) >= 2
    assert set(data._read_all({"read": backend_pid}, side_by_side=False).values()) == {own}


def test_side_by_side_load_equals_the_load_in_turn(book):
    now = timezone.now()
    assert not connection.in_atomic_block  # so the first load reads side by side, in heap ranges
    apart = data.load_tables(as_of=now)
    with transaction.atomic():  # inside a transaction: everything on its own connection, in turn
        together = data.load_tables(as_of=now)
    for name in ("customers", "sessions", "tickets", "nps", "billing", "actions"):
        a, b = getattr(apart, name), getattr(together, name)
        if name == "customers":
            a, b = a.drop(columns="feature_usage"), b.drop(columns="feature_usage")
        pd.testing.assert_frame_equal(sorted_frame(a), sorted_frame(b), check_exact=True, obj=name)
    # Every session of the window exactly once across the heap ranges, plus one earlier start for
    # each customer active before it.
    start = now - pd.Timedelta(days=data.SESSION_WINDOW_DAYS)
    window = UserSession.objects.filter(started_at__gte=start, started_at__lte=now).count()
    earlier = UserSession.objects.filter(started_at__lt=start).values("customer_id").distinct().count()
    assert window > 0 and earlier > 0
    assert len(apart.sessions) == window + earlier


def test_packed_billing_equals_the_copy_path(book):
    BillingEvent.objects.filter(pk=BillingEvent.objects.order_by("pk").first().pk).update(kind="refund_issued")
    packed = data._billing_packed(None)
    columns = ["customer_id", "occurred_at", "kind", "amount", "mrr_after"]
    copied = data._frame(BillingEvent.objects.all(), columns, times=["occurred_at"])
    copied["amount"] = copied["amount"].astype(float)
    copied["mrr_after"] = pd.to_numeric(copied["mrr_after"], errors="coerce").astype(float)
    copied["kind"] = copied["kind"].where(copied["kind"].isin(BillingEvent.Kind.values), "")  # an unknown kind
    assert copied["mrr_after"].isna().any() and copied["mrr_after"].notna().any()
    pd.testing.assert_frame_equal(sorted_frame(packed), sorted_frame(copied), check_exact=True)


def test_feature_usage_beyond_a_double_still_loads(book):
    """jsonb keeps numbers orjson refuses (1e400, which it writes out as 401 digits): the load
    falls back to the stdlib, which reads them as Python ints, as it always did."""
    customer_id = data.Customer.objects.filter(churned_at__isnull=True).values_list("pk", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE customers SET feature_usage = \'{"reports": 1e400, "seats": 3}\'::jsonb WHERE id = %s',
            [customer_id],
        )
    now = timezone.now()
    usage = data.load_tables(as_of=now).customers.set_index("customer_id").loc[customer_id, "feature_usage"]
    assert usage == {"reports": 10**400, "seats": 3}
    one = data.load_tables(customer_ids=[customer_id], as_of=now).customers  # the real-time read
    assert one["feature_usage"].tolist() == [usage]
    features = build_features(data.load_tables(as_of=now), pd.Timestamp(now))
    assert customer_id in features.index
