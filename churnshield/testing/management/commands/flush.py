"""`flush` for test runs: DELETE instead of TRUNCATE on PostgreSQL.

Every transactional test (`transactional_db`, `live_server`, TransactionTestCase) ends with
Django's flush. On PostgreSQL that is one TRUNCATE over every table, which replaces each table's
and index's files: about 1.4 s on nearly empty tables, where DELETE FROM the same tables takes
a few milliseconds. Django's foreign keys are DEFERRABLE INITIALLY DEFERRED, so deleting from
every table in one transaction, in any order, satisfies them at commit.

What tests see is unchanged: the same tables end empty and post_migrate runs as before.
TRUNCATE also fires TRUNCATE triggers (customer_counts is emptied by one); DELETE fires DELETE
triggers instead, so tables that no model owns are emptied here too, except Django's migration
record and database cache tables, which flush has never touched.

Anything else goes Django's way: other databases, `manage.py flush` (it restarts sequences),
`reset_sequences`, and `available_apps` (it needs TRUNCATE … CASCADE).
"""

from typing import Any

from django.conf import settings
from django.core.management.commands import flush
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections, transaction
from django.db.migrations.recorder import MigrationRecorder


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        database = options["database"]
        connection = connections[database]
        if (
            connection.vendor != "postgresql"
            or options["interactive"]
            or options.get("reset_sequences", True)
            or options.get("allow_cascade", False)
        ):
            super().handle(**options)
            return
        introspection = connection.introspection
        django_tables = introspection.django_table_names(only_existing=True, include_views=False)
        kept = {MigrationRecorder.Migration._meta.db_table} | {
            cache["LOCATION"]
            for cache in settings.CACHES.values()
            if cache["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
        }
        tables = sorted({*django_tables, *introspection.table_names(include_views=False)} - kept)
        quote = connection.ops.quote_name
        with transaction.atomic(using=database, savepoint=False), connection.cursor() as cursor:
            # Table names come from the database's own catalogue, quoted.
            cursor.execute("; ".join(f"DELETE FROM {quote(table)}" for table in tables))  # noqa: S608
        if django_tables and not options.get("inhibit_post_migrate", False):
            emit_post_migrate_signal(options["verbosity"], False, database)
