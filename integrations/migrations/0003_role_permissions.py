"""Give the role groups their permissions on the sync-run, webhook and record tables added in 0002."""

from importlib import import_module

from django.db import migrations


def sync_roles(apps, schema_editor):
    import_module("customers.migrations.0002_roles").create_roles(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0002_sync_runs_webhooks_records"), ("customers", "0002_roles")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
