"""Shared fixtures: users in each role, customers, and API clients signed in as them."""

import datetime as dt
import itertools
import os
from decimal import Decimal

import environ
import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connections
from django.utils import timezone
from kombu import pools

from alerts.tests.servers import start_smtp
from churnshield.testing.management.commands.flush import keep_seeded_rows
from customers.models import Customer
from tests.helpers import client_for, reset_broker_pools

_counter = itertools.count(1)

# Where the connection settings of the test database come from behind a pooler (below).
_ADDRESS_KEYS = ("HOST", "PORT", "USER", "PASSWORD")
_pooled_address: dict[str, object] = {}


def _direct_address() -> dict[str, object] | None:
    """PostgreSQL itself when DATABASE_URL is a transaction-mode pooler's (DATABASE_DIRECT_URL set)."""
    from django.conf import settings

    if not settings.DATABASE_DIRECT_URL or connections["default"].vendor != "postgresql":
        return None
    direct = environ.Env.db_url_config(settings.DATABASE_DIRECT_URL)
    return {key: direct.get(key, "") for key in _ADDRESS_KEYS}


def _connect_default_to(address: dict[str, object]) -> None:
    connection = connections["default"]
    connection.close()
    connection.close_pool()  # the pool keeps the address it was opened with
    connection.settings_dict.update(address)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist workers (`make test`), the live tests (servers, Celery workers and browsers
    over the worker's own test database and Redis database) run one at a time on one worker, and
    first: they are the longest unit, mostly waiting on their processes. The rest spreads over the
    other workers. (The fault suite runs after, on its own: its timing bounds assume it has the
    machine to itself.)"""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    live = [item for item in items if item.get_closest_marker("live")]
    for item in live:
        item.add_marker(pytest.mark.xdist_group("live"))
    items.sort(key=lambda item: item.get_closest_marker("live") is None)  # stable: order within kept


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Behind a pooler, the test database is created and migrated over DATABASE_DIRECT_URL, as
    `manage.py migrate` is: a migration is one long transaction, better kept off the pool."""
    if direct := _direct_address():
        settings_dict = connections["default"].settings_dict
        _pooled_address.update({key: settings_dict[key] for key in _ADDRESS_KEYS})
        settings_dict.update(direct)
        _end_sessions_on(connections["default"].creation._get_test_db_name())


def _end_sessions_on(database: str) -> None:
    """End every session on this database (over the direct URL). A pooler keeps idle server
    connections to a test database, which DROP DATABASE would wait on: at the end of the run,
    and at its start when an interrupted run left the database behind."""
    address = {key.lower(): connections["default"].settings_dict[key] or None for key in _ADDRESS_KEYS}
    with psycopg.connect(**address, dbname="postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The rows migrations seed are kept for every flush to restore. Behind a pooler, the tests
    (and the processes they start, which copy these settings) then run through it, and the
    database is dropped over the direct URL again. PgBouncer keeps its server connections to the
    test database open, which DROP DATABASE would wait on: they are ended first, and PgBouncer
    opens new ones when asked."""
    direct = _direct_address()
    with django_db_blocker.unblock():
        keep_seeded_rows()  # every flush puts them back (churnshield/testing's flush)
        if direct is not None:
            _connect_default_to(_pooled_address)
    yield
    if direct is not None:
        with django_db_blocker.unblock():
            _connect_default_to(direct)
            _end_sessions_on(connections["default"].settings_dict["NAME"])


@pytest.fixture(autouse=True)
def _celery_state_restored():
    """Live and fault tests point the Celery app at their own broker, make apps of their own, switch
    eager mode off or close its connection pool; whatever a test does, the next one starts from
    the configured app."""
    from celery import _state

    from churnshield.celery import app

    saved = (app.conf.broker_url, app.conf.result_backend, app.conf.task_always_eager)
    yield
    app.set_current()  # a test's own Celery() becomes the current app, which `shared_task`s send through
    app.conf.update(broker_url=saved[0], result_backend=saved[1], task_always_eager=saved[2])
    if any(getattr(pool, "_closed", False) for pool in pools.connections.values()):
        reset_broker_pools()
    _state._set_task_join_will_block(False)


@pytest.fixture(autouse=True)
def _clear_cache():
    # Throttle counters live in the cache; one test's login attempts must not leak into the next.
    # The champion's risk bands are kept per process for a few seconds: not across tests either.
    from predictions.selectors import champion_risk_bands

    cache.clear()
    champion_risk_bands.forget()
    yield
    cache.clear()
    champion_risk_bands.forget()


@pytest.fixture
def make_user(db):
    def make(role: str | None = "csm", username: str | None = None, password: str = "s3cret-pass-123", **extra):
        n = next(_counter)
        user = get_user_model().objects.create_user(
            username=username or f"test-{role or 'norole'}{n}",
            email=f"{username or role}{n}@example.com",
            password=password,
            first_name=extra.pop("first_name", (role or "user").title()),
            last_name=extra.pop("last_name", str(n)),
            is_staff=True,
            **extra,
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def make_customer(db):
    def make(owner=None, **fields) -> Customer:
        n = next(_counter)
        defaults = {
            "name": f"Customer {n}",
            "email": f"customer{n}@example.com",
            "company": f"Company {n}",
            "plan": "Pro",
            "mrr": Decimal("500.00"),
            "signup_date": timezone.now() - dt.timedelta(days=400),
            "last_login": timezone.now() - dt.timedelta(days=2),
            "health_score": 70,
            "churn_risk": Decimal("0.2500"),
            "nps_score": 8,
            "support_tickets": 1,
            "feature_usage": {"reports": 3},
            "owner": owner,
        }
        defaults.update(fields)
        return Customer.objects.create(**defaults)

    return make


@pytest.fixture
def api_for():
    return client_for


@pytest.fixture
def csm(make_user):
    return make_user("csm")


@pytest.fixture
def other_csm(make_user):
    return make_user("csm")


@pytest.fixture
def manager(make_user):
    return make_user("manager")


@pytest.fixture
def viewer(make_user):
    return make_user("viewer")


@pytest.fixture
def admin_user(make_user):
    return make_user("admin")


@pytest.fixture
def smtp(settings):
    """A real SMTP server; Django's mail framework is pointed at it (pytest-django defaults to locmem)."""
    handler, controller = start_smtp()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", handler.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    yield handler
    controller.stop()
