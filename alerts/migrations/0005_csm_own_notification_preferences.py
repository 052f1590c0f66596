"""CSMs may add and change their own notification preferences in the admin again.

0003 granted it, but later migrations re-run `customers.migrations.0002_roles.create_roles`, which
sets the csm group's permissions from its own list and so took the grant away (a CSM got 403
saving their Slack URL, quiet hours or digest). That list now names them; this puts them back on
databases migrated before.
"""

from django.db import migrations

CODENAMES = ["add_notificationpreference", "change_notificationpreference"]


def grant(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(content_type__app_label="alerts", codename__in=CODENAMES)
    for group in Group.objects.filter(name="csm"):
        group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0004_alert_fan_out_pending"),
        ("customers", "0006_csm_without_plumbing"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
