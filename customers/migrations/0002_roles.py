"""Create the role groups (admin, manager, csm, viewer) with their model permissions.

The API checks roles itself; these permissions make the Django admin apply the same rules.
"""

from django.db import migrations

DOMAIN_APPS = ["customers", "interventions", "playbooks", "predictions", "integrations", "alerts"]
CSM_EXTRA = {
    "customers": ["change_customer"],
    "interventions": ["add_intervention", "change_intervention"],
    # A CSM's own notification preferences (the admin narrows the rows to their own).
    "alerts": ["change_alert", "add_notificationpreference", "change_notificationpreference"],
    # Deciding the queued customer e-mails of their own customers (playbooks 0004 granted it; later
    # migrations re-run this function, so it is named here or a re-run takes it away).
    "playbooks": ["change_emailreview"],
}
# Book-wide plumbing a CSM does not read (raw webhook bodies name every portfolio's customers;
# scoring runs and the registry count the whole book). Later migrations re-run this function, so
# it must not grant them again (customers 0006 took them away).
CSM_HIDDEN = {
    "integrations": ["view_integration", "view_syncrun", "view_webhookevent", "view_externalrecord"],
    "predictions": ["view_predictionrun", "view_modelversion", "view_modelversionchange"],
    # Uploaded history files name every portfolio's customers.
    "customers": ["view_importjob", "view_importchunk"],
}


def csm_hidden(Permission):
    hidden = Permission.objects.none()
    for app_label, codenames in CSM_HIDDEN.items():
        hidden = hidden | Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
    return hidden


def create_roles(apps, schema_editor):
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    for label in [*DOMAIN_APPS, "auth", "django_celery_beat"]:
        try:
            config = global_apps.get_app_config(label)
        except LookupError:
            continue
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    domain = Permission.objects.filter(content_type__app_label__in=DOMAIN_APPS)
    view = domain.filter(codename__startswith="view_")

    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.set(
        Permission.objects.filter(content_type__app_label__in=[*DOMAIN_APPS, "auth", "django_celery_beat"])
    )
    manager, _ = Group.objects.get_or_create(name="manager")
    manager.permissions.set(domain)
    viewer, _ = Group.objects.get_or_create(name="viewer")
    viewer.permissions.set(view)
    csm, _ = Group.objects.get_or_create(name="csm")
    extra = Permission.objects.none()
    for app_label, codenames in CSM_EXTRA.items():
        extra = extra | Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
    csm.permissions.set(list(view.exclude(pk__in=csm_hidden(Permission).values("pk"))) + list(extra))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["admin", "manager", "csm", "viewer"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0001_initial"),
        ("interventions", "0001_initial"),
        ("playbooks", "0001_initial"),
        ("predictions", "0001_initial"),
        ("integrations", "0001_initial"),
        ("alerts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
