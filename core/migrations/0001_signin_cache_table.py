"""The database cache table (CACHES["signin_db"]): sign-in's counters while Redis is unreachable."""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor) -> None:
    # Django's own command: creates every DatabaseCache table in CACHES that does not exist yet.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies: list = []

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
