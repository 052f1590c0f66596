"""The flush that ends every transactional test (the test settings' own, churnshield/testing)
leaves the database exactly as Django's TRUNCATE flush does."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connection

from interventions.services import intervention_create

# As TransactionTestCase._fixture_teardown calls it.
TEARDOWN_OPTIONS = {
    "verbosity": 0,
    "interactive": False,
    "database": "default",
    "reset_sequences": False,
    "allow_cascade": False,
    "inhibit_post_migrate": False,
}
# Never emptied by flush: the migration record and the database cache tables.
UNFLUSHED = {"django_migrations"} | {
    c["LOCATION"] for c in settings.CACHES.values() if c["BACKEND"].endswith(".db.DatabaseCache")
}
# Filled again by post_migrate after every flush.
REFILLED = {"django_content_type", "auth_permission"}


def rows_per_table() -> dict[str, int]:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        counts = {}
        for table in sorted(set(connection.introspection.table_names(include_views=False)) - UNFLUSHED):
            cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


def write_rows_across_tables(make_user, make_customer) -> None:
    """Users in a role group (auth_user, auth_group, auth_user_groups, auth_group_permissions), a
    customer they own (customers, and customer_counts by trigger on PostgreSQL), an intervention on it."""
    manager = make_user("manager")
    customer = make_customer(owner=make_user("csm"))
    intervention_create(user=manager, customer_id=customer.pk, type="Call")


# The next two run in file order: the second sees what the first one's teardown left.
@pytest.mark.django_db(transaction=True)
def test_a_transactional_test_writes_rows_in_many_tables(make_user, make_customer):
    write_rows_across_tables(make_user, make_customer)

    filled = {table for table, n in rows_per_table().items() if n}
    expected = {"auth_user", "auth_group", "auth_user_groups", "auth_group_permissions", "customers", "interventions"}
    assert expected <= filled
    if connection.vendor == "postgresql":
        assert "customer_counts" in filled


@pytest.mark.django_db(transaction=True)
def test_after_a_transactional_test_every_table_is_empty():
    assert {table: n for table, n in rows_per_table().items() if n and table not in REFILLED} == {}


@pytest.mark.django_db(transaction=True)
def test_the_teardown_flush_leaves_the_rows_djangos_flush_leaves(make_user, make_customer):
    write_rows_across_tables(make_user, make_customer)
    DjangoFlush().handle(**TEARDOWN_OPTIONS)
    after_djangos = rows_per_table()

    write_rows_across_tables(make_user, make_customer)
    call_command("flush", **TEARDOWN_OPTIONS)

    assert rows_per_table() == after_djangos
    assert {table: n for table, n in after_djangos.items() if n and table not in REFILLED} == {}
    assert after_djangos["auth_permission"] > 0  # post_migrate ran


@pytest.mark.django_db(transaction=True)
def test_flush_with_reset_sequences_still_restarts_them(make_user):
    make_user("csm")
    make_user("csm")

    call_command("flush", verbosity=0, interactive=False)  # manage.py flush: reset_sequences

    assert get_user_model().objects.create_user(username="first").pk == 1
