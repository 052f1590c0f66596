"""CSMs lose read access to book-wide plumbing: integrations, sync runs, raw webhook deliveries,
external records, scoring runs and the model registry.

A webhook body names customers of every portfolio, and a scoring run counts the whole book; none
of it can be narrowed to one portfolio. The admin closes these pages to CSMs as well
(`customers.admin_scoping`), so either guard alone keeps them out.
"""

from importlib import import_module

from django.db import migrations


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    roles = import_module("customers.migrations.0002_roles")
    for group in Group.objects.filter(name="csm"):
        group.permissions.remove(*roles.csm_hidden(Permission))


def grant_back(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    roles = import_module("customers.migrations.0002_roles")
    for group in Group.objects.filter(name="csm"):
        group.permissions.add(*roles.csm_hidden(Permission))


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0005_customer_counts"),
        ("integrations", "0003_role_permissions"),
        ("predictions", "0006_health_score_weights"),
    ]

    operations = [migrations.RunPython(revoke, grant_back)]
