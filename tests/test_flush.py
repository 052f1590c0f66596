"""The flush that ends every transactional test (the test settings' own, churnshield/testing)
leaves the database exactly as migrate left it: what tests wrote deleted, what data migrations
seeded (and a test deleted) back."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connection

from churnshield.testing.management.commands.flush import SEEDED_PREFIX, seeded_tables
from interventions.services import intervention_create

# In file order, on one worker under pytest-xdist: a test below sees what the one before it left.
pytestmark = pytest.mark.xdist_group("test_flush")

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
            if table.startswith(SEEDED_PREFIX):
                continue
            cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


def write_rows_across_tables(make_user, make_customer) -> None:
    """Users in a role group (auth_user, auth_group, auth_user_groups, auth_group_permissions), a
    customer they own (customers, and customer_counts by trigger on PostgreSQL), an intervention on it."""
    manager = make_user("manager")
    customer = make_customer(owner=make_user("csm"))
    intervention_create(user=manager, customer_id=customer.pk, type="Call")


def _count(cursor, sql: str) -> int:
    cursor.execute(f"SELECT count(*) FROM ({sql}) d")
    return cursor.fetchone()[0]


def differences_from_migrate() -> dict[str, int]:
    """Per table, how far it is from what migrate left (the copy `keep_seeded_rows` took at
    setup): its rows not in the copy, the copy's rows not in it, and the difference in count."""
    quote = connection.ops.quote_name
    seeded = set(seeded_tables(connection))
    differences = {}
    with connection.cursor() as cursor:
        for table in rows_per_table():
            here, there = quote(table), quote(SEEDED_PREFIX + table)
            if table in seeded:
                n = _count(cursor, f"SELECT * FROM {here} EXCEPT SELECT * FROM {there}")
                n += _count(cursor, f"SELECT * FROM {there} EXCEPT SELECT * FROM {here}")
                n += abs(_count(cursor, f"SELECT * FROM {here}") - _count(cursor, f"SELECT * FROM {there}"))
            else:
                n = _count(cursor, f"SELECT * FROM {here}")
            if n:
                differences[table] = n
    return differences


# The next two run in file order: the second sees what the first one's teardown left.
@pytest.mark.django_db(transaction=True)
def test_a_transactional_test_writes_rows_in_many_tables(make_user, make_customer):
    write_rows_across_tables(make_user, make_customer)

    changed = set(differences_from_migrate())
    assert {"auth_user", "auth_user_groups", "customers", "interventions"} <= changed
    if connection.vendor == "postgresql":
        assert "customer_counts" in changed


@pytest.mark.django_db(transaction=True)
def test_after_a_transactional_test_the_database_is_as_migrate_left_it():
    assert differences_from_migrate() == {}
    # What the data migrations seed, which tests after this one rely on: the roles and their
    # permissions.
    assert set(Group.objects.values_list("name", flat=True)) >= {"csm", "manager", "viewer", "admin"}
    assert Group.objects.get(name="manager").permissions.count() > 0


@pytest.mark.django_db(transaction=True)
def test_the_teardown_flush_deletes_what_tests_wrote_and_restores_what_they_deleted(make_user, make_customer):
    write_rows_across_tables(make_user, make_customer)
    Group.objects.get(name="viewer").delete()
    assert {"auth_group", "auth_group_permissions"} <= set(differences_from_migrate())

    call_command("flush", **TEARDOWN_OPTIONS)

    assert differences_from_migrate() == {}


@pytest.mark.django_db(transaction=True)
def test_djangos_flush_would_leave_the_seeded_tables_empty(make_user, make_customer):
    """Why the test flush restores rows: Django's own leaves only what post_migrate refills."""
    write_rows_across_tables(make_user, make_customer)
    DjangoFlush().handle(**TEARDOWN_OPTIONS)

    assert not Group.objects.exists()
    assert {table: n for table, n in rows_per_table().items() if n and table not in REFILLED} == {}
    assert rows_per_table()["auth_permission"] > 0  # post_migrate ran
    call_command("flush", **TEARDOWN_OPTIONS)
    assert differences_from_migrate() == {}


@pytest.mark.django_db(transaction=True)
def test_flush_with_reset_sequences_still_restarts_them(make_user):
    make_user("csm")
    make_user("csm")

    call_command("flush", verbosity=0, interactive=False)  # manage.py flush: reset_sequences

    assert get_user_model().objects.create_user(username="first").pk == 1
