"""`flush` for test runs: DELETE instead of TRUNCATE, and the rows migrations seed put back.

Every transactional test (`transactional_db`, `live_server`, TransactionTestCase) ends with
Django's flush. On PostgreSQL that is one TRUNCATE over every table, which replaces each table's
and index's files: about 1.4 s on nearly empty tables, where DELETE FROM the same tables takes
a few milliseconds. Django's foreign keys are DEFERRABLE INITIALLY DEFERRED, so deleting from
every table in one transaction, in any order, satisfies them at commit.

Django's flush also empties the tables data migrations filled (the roles and their permissions),
so a test that runs after a transactional one would see a database no deployment has.
`keep_seeded_rows`, run once after the test database is migrated, copies every non-empty table
into a table of its own (`seeded__<table>`); this flush puts those rows back in the same
transaction, so every test starts from the database `migrate` leaves, whatever ran before it
(pytest-xdist's workers do not run tests in the serial order).

TRUNCATE also fires TRUNCATE triggers (customer_counts is emptied by one); DELETE fires DELETE
triggers instead, so tables that no model owns are emptied here too, except Django's migration
record and database cache tables, which flush has never touched.

Anything else goes Django's way: `manage.py flush` (it restarts sequences), `reset_sequences`,
and `available_apps` (it needs TRUNCATE … CASCADE).
"""

from typing import Any

from django.conf import settings
from django.core.management.commands import flush
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder

SEEDED_PREFIX = "seeded__"


def _tables(connection: BaseDatabaseWrapper) -> list[str]:
    return connection.introspection.table_names(include_views=False)


def _flushed_tables(connection: BaseDatabaseWrapper) -> list[str]:
    kept = {MigrationRecorder.Migration._meta.db_table} | {
        cache["LOCATION"]
        for cache in settings.CACHES.values()
        if cache["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    }
    django_tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    every = {*django_tables, *_tables(connection)}
    return sorted(table for table in every - kept if not table.startswith(SEEDED_PREFIX))


def seeded_tables(connection: BaseDatabaseWrapper) -> list[str]:
    """The tables `keep_seeded_rows` copied (their own names)."""
    return [table.removeprefix(SEEDED_PREFIX) for table in _tables(connection) if table.startswith(SEEDED_PREFIX)]


def keep_seeded_rows(database: str = "default") -> None:
    """Copy the rows of every table that is not empty (right after migrate: what data migrations
    and post_migrate seeded) for `flush` to restore."""
    connection = connections[database]
    quote = connection.ops.quote_name
    # Table names come from the database's own catalogue, quoted.
    with transaction.atomic(using=database), connection.cursor() as cursor:
        for table in seeded_tables(connection):
            cursor.execute(f"DROP TABLE {quote(SEEDED_PREFIX + table)}")
        for table in _flushed_tables(connection):
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(table)})")  # noqa: S608
            if cursor.fetchone()[0]:
                cursor.execute(f"CREATE TABLE {quote(SEEDED_PREFIX + table)} AS SELECT * FROM {quote(table)}")  # noqa: S608


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        database = options["database"]
        connection = connections[database]
        if options["interactive"] or options.get("reset_sequences", True) or options.get("allow_cascade", False):
            super().handle(**options)
            return
        tables = _flushed_tables(connection)
        quote = connection.ops.quote_name
        # Table names come from the database's own catalogue, quoted.
        statements = [f"DELETE FROM {quote(table)}" for table in tables]  # noqa: S608
        statements += [
            f"INSERT INTO {quote(table)} SELECT * FROM {quote(SEEDED_PREFIX + table)}"  # noqa: S608
            for table in seeded_tables(connection)
        ]
        with transaction.atomic(using=database, savepoint=False), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("; ".join(statements))  # one round trip
            else:
                for statement in statements:  # SQLite runs one statement per call
                    cursor.execute(statement)
        if tables and not options.get("inhibit_post_migrate", False):
            emit_post_migrate_signal(options["verbosity"], False, database)
