"""Every ModelAdmin's changelist costs the same number of queries with 3 rows as with 30 (STYLE 10).

Generated from `admin.site._registry`, so a new ModelAdmin (ours or a third-party app's) is
checked the day it is registered. Rows come from `make_row`, which fills every field (nullable
foreign keys included) with a *different* related row per object: a column that follows a
relation without `list_select_related` then costs one query per row and the counts differ.
"""

import datetime as dt
import itertools
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from customers.models import Customer

# Our apps' models that are deliberately not admin pages of their own, and why.
NOT_IN_ADMIN = {
    "integrations.ExternalRecord": "bookkeeping of the sync pipeline (outside id → local row, version applied)",
    "monitoring.TaskAttempt": "GuardedTask's start counter; dead letters surface as alerts",
    "customers.ImportChunk": "pieces of an uploaded history file, read through their import job's page",
    "customers.RenewalCount": "the renewals pages' daily per-owner count, read on the renewals list and forecast",
}
OUR_APPS = {"customers", "interventions", "playbooks", "predictions", "integrations", "alerts", "monitoring"}
_serial = itertools.count(1)


def _value(field: models.Field, n: int) -> Any:
    """A valid value for a non-relational field (check constraints in this project allow 0)."""
    if field.choices:
        return field.choices[0][0]
    if isinstance(field, models.EmailField):
        return f"row{n}@example.com"
    if isinstance(field, models.GenericIPAddressField):
        return "127.0.0.1"
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, (models.CharField, models.TextField)):
        return f"{field.name}-{n}"[: field.max_length or 100]
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, models.DecimalField):
        return Decimal(0)
    if isinstance(field, (models.IntegerField, models.FloatField)):
        return 0
    if isinstance(field, models.DateTimeField):
        return timezone.now() - dt.timedelta(minutes=n)
    if isinstance(field, models.DateField):
        return timezone.now().date() - dt.timedelta(days=n)
    if isinstance(field, models.TimeField):
        return dt.time(9, 0)
    if isinstance(field, models.DurationField):
        return dt.timedelta(minutes=5)
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.BinaryField):
        return b""
    raise NotImplementedError(f"make_row: no value for {field.__class__.__name__} {field}")


def _email_review(n: int) -> models.Model:
    """A queued e-mail of an execution of an existing playbook: playbooks are book-wide reference
    data, so the filler must not invent one on the way (nor a review whose customer differs from
    its execution's)."""
    from playbooks.models import EmailReview, Playbook, PlaybookExecution

    playbook = Playbook.objects.order_by("pk").first() or make_row(Playbook)
    execution = make_row(PlaybookExecution, playbook=playbook, rule=None)
    return EmailReview.objects.create(
        execution=execution,
        playbook=playbook,
        customer=execution.customer,
        step_key=f"s{n}",
        to=execution.customer.email,
        subject=f"Subject {n}",
        body=f"Body {n}",
    )


# Models whose own rules the generic filler cannot know.
SPECIAL = {
    # One schedule kind per task (django-celery-beat validates it on save).
    PeriodicTask: lambda n: PeriodicTask.objects.create(
        name=f"task-{n}", task="churnshield.noop", interval=IntervalSchedule.objects.create(every=n, period="seconds")
    ),
    CrontabSchedule: lambda n: CrontabSchedule.objects.create(minute=str(n % 60)),
    SolarSchedule: lambda n: SolarSchedule.objects.create(event="sunrise", latitude=n % 90, longitude=n % 180),
    "playbooks.EmailReview": _email_review,
}
# One row by constraint: there is no "more rows" to grow to.
SINGLETONS = {"alerts.NotificationSettings"}


def make_row(model: type[models.Model], depth: int = 0, **fixed: Any) -> models.Model:
    """One saved row of `model` with fresh related rows (so relations differ row to row), except
    the `fixed` field values."""
    n = next(_serial)
    special = SPECIAL.get(model) or SPECIAL.get(model._meta.label)
    if special:
        return special(n)
    if model is get_user_model():
        return model.objects.create_user(username=f"user-{n}", email=f"user{n}@example.com", first_name="U")
    if model is Group:
        return Group.objects.create(name=f"group-{n}")
    values: dict[str, Any] = dict(fixed)
    for field in model._meta.concrete_fields:
        if field.primary_key or field.generated or field.name in fixed:
            continue
        if field.is_relation:
            if depth < 3 and field.related_model is not model:
                values[field.name] = make_row(field.related_model, depth + 1)
            continue
        # Empty-string defaults are filled too: they are often part of a unique key.
        empty_text = isinstance(field, (models.CharField, models.TextField)) and field.get_default() == ""
        if (field.has_default() and not empty_text) or (field.null and not field.unique):
            continue
        values[field.name] = _value(field, n)
    return model.objects.create(**values)


def registered() -> list[tuple[type[models.Model], admin.ModelAdmin]]:
    items = [(m, a) for m, a in admin.site._registry.items() if m._meta.label not in SINGLETONS]
    return sorted(items, key=lambda item: item[0]._meta.label)


def changelist_queries(client: Client, model: type[models.Model]) -> tuple[int, int]:
    path = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(queries), response.context["cl"].result_count


def inline_models() -> set[type[models.Model]]:
    return {inline.model for model_admin in admin.site._registry.values() for inline in model_admin.inlines}


def test_every_model_of_our_apps_has_an_admin_page_or_a_reason():
    ours = {model for model in apps.get_models() if model._meta.app_label in OUR_APPS}
    covered = set(admin.site._registry) | inline_models()
    missing = {model._meta.label for model in ours - covered}
    assert missing == set(NOT_IN_ADMIN), "register the model or say in NOT_IN_ADMIN why it has no page"


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "model_admin"), registered(), ids=lambda value: getattr(value, "__name__", ""))
def test_changelist_query_count_is_constant_as_rows_grow(model, model_admin, make_user):
    superuser = get_user_model().objects.create_superuser(username="root", email="root@example.com", password="x")
    client = Client()
    client.force_login(superuser)
    existing = model._default_manager.count()  # e.g. the role groups and the default playbooks
    for _ in range(3):
        make_row(model)
    client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))  # warm caches
    few, shown_few = changelist_queries(client, model)
    for _ in range(27):
        make_row(model)
    many, shown_many = changelist_queries(client, model)
    assert (shown_few, shown_many) == (existing + 3, existing + 30), "the rows made must be listed"
    assert many == few, f"{model._meta.label}: {few} queries for {shown_few} rows, {many} for {shown_many}"


@pytest.mark.django_db
def test_singletons_have_one_row_at_most(admin_user):
    client = Client()
    client.force_login(admin_user)
    for label in SINGLETONS:
        model = apps.get_model(label)
        assert changelist_queries(client, model)[1] <= 1


# Scoped to the CSM's own user row and unique per user: a CSM's changelist shows one row at most.
ONE_PER_USER = {"alerts.NotificationPreference"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "model_admin"),
    [(m, a) for m, a in registered() if getattr(a, "customer_path", None) and m._meta.label not in ONE_PER_USER],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_csm_changelist_query_count_is_constant_as_rows_grow(model, model_admin, csm):
    """The CSM's changelist adds the portfolio filter (and for some pages, annotations)."""
    client = Client()
    client.force_login(csm)
    path = model_admin.customer_path
    # Scoped through a customer: hand every customer to the CSM after the fact; scoped by a
    # user column on the row itself: make the rows with the CSM there.
    fixed = {} if "__" in path or model is Customer else {path: csm}

    def grow(count: int) -> None:
        for _ in range(count):
            make_row(model, **fixed)
        Customer.objects.update(owner=csm)

    grow(3)
    client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
    few, shown_few = changelist_queries(client, model)
    grow(27)
    many, shown_many = changelist_queries(client, model)
    assert shown_many == shown_few + 27 and shown_few >= 3
    assert many == few, f"{model._meta.label}: {few} queries for {shown_few} rows, {many} for {shown_many}"


def _card_version(size: int) -> models.Model:
    """A champion whose stored card, drift and history all grow with `size`."""
    from predictions.models import ModelVersion, ModelVersionChange, PredictionRun

    now = timezone.now()
    headline = {"roc_auc": 0.8, "roc_auc_ci": [0.7, 0.9], "pr_auc": 0.4, "n_samples": 100, "positives": 9}
    features = [f"feature_{n}" for n in range(10 * size)]
    version = ModelVersion.objects.create(
        version=f"xgb-card-{size}",
        kind="xgboost",
        trained_at=now,
        as_of=now,
        feature_names=features,
        training_window={"horizon_days": 90, "protocol": "rolling-origin"},
        metrics={
            **headline,
            "blocks": [{"block": f"2026-0{n % 9 + 1}-01", "xgboost": headline} for n in range(size)],
            "calibration_bins": [
                {
                    "bin": n,
                    "low": n / 10,
                    "high": (n + 1) / 10,
                    "n": 10,
                    "mean_predicted": n / 10,
                    "observed_rate": n / 11,
                }
                for n in range(min(size, 10))
            ],
            "threshold_table": [
                {"threshold": n / 10, "contacted": 5, "precision": 0.5, "recall": 0.5} for n in range(9)
            ],
            "band_thresholds": [{"band": "high", "threshold": 0.3, "contacted": 5, "precision": 0.5, "recall": 0.5}],
            "rules_reference": headline,
        },
        baseline_metrics=headline,
        importance={name: 1 / len(features) for name in features},
    )
    for n in range(size):
        other = make_row(ModelVersion)
        ModelVersionChange.objects.create(
            action="promoted", version=version, previous=other, changed_by=make_row(get_user_model()),
            changed_at=now - dt.timedelta(hours=n), reason=f"change {n}",
        )  # fmt: skip
    ModelVersion.objects.filter(status="champion").update(status="retired")
    ModelVersion.objects.filter(pk=version.pk).update(status="champion")
    for n in range(size):
        PredictionRun.objects.create(
            run_key=f"card-{size}-{n}", model_version=version, started_at=now - dt.timedelta(days=n),
            status="completed", drift={name: 0.01 * (n + i) for i, name in enumerate(features)},
        )  # fmt: skip
    return version


@pytest.mark.django_db
def test_the_model_card_costs_the_same_queries_whatever_the_card_holds(manager):
    """Blocks, bins, features, drifted features, champion changes and runs: none costs a query each."""
    client = Client()
    client.force_login(manager)

    def queries(version: models.Model) -> int:
        path = reverse("admin:predictions_modelversion_change", args=[version.pk])
        client.get(path)  # warm caches (the user's role, content types)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200 and b"cs-card-blocks" in response.content
        return len(captured)

    small, large = queries(_card_version(2)), queries(_card_version(12))
    assert small == large, f"{small} queries for a small card, {large} for a large one"
