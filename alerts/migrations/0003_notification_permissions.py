"""Give the role groups their admin permissions on the notification models.

Managers and admins edit the noise-control settings and everyone's preferences; CSMs edit their
own preferences (the admin scopes rows to the signed-in user); every role may read its own
delivery log. The delivery log is written by the system only.
"""

from django.db import migrations

GRANTS = {
    "admin": ["notificationsettings", "notificationpreference", "notificationdelivery"],
    "manager": ["notificationsettings", "notificationpreference", "notificationdelivery"],
}
CODENAMES = {
    "csm": [
        "view_notificationpreference",
        "add_notificationpreference",
        "change_notificationpreference",
        "view_notificationdelivery",
    ],
    "viewer": ["view_notificationpreference", "view_notificationdelivery"],
}


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    config = apps.get_app_config("alerts")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, models in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="alerts", content_type__model__in=models)
        )
    for name, codenames in CODENAMES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="alerts", codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_notifications"),
        ("customers", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
