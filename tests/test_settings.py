"""Production settings refuse unsafe configuration, and pass Django's deployment checks (S4)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "synthetic-playbook-webhook-secret-for-deploy-checks"
GOOD_ENV = {
    "DJANGO_SETTINGS_MODULE": "churnshield.settings.production",
    "SECRET_KEY": "x9!Kq2#vLm7@pR4$tW8^zN1&bC5*dF3(gH6)jY0-uE_iO+aS=eQ~rT|wV<yX>" * 1,
    "PLAYBOOK_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "DATABASE_URL": "sqlite:////tmp/churnshield-deploy-check.sqlite3",
    "ALLOWED_HOSTS": "churnshield.example.com",
    "TRUSTED_ORIGINS": "https://app.example.com",
}


def run_manage(*args: str, **env_overrides: str | None) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "PLAYBOOK_WEBHOOK_SECRET")
    }
    env.update(GOOD_ENV)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_deploy_check_is_clean():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": "django-insecure-local-development-only-key"}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"PLAYBOOK_WEBHOOK_SECRET": None}, "PLAYBOOK_WEBHOOK_SECRET"),
        ({"PLAYBOOK_WEBHOOK_SECRET": ""}, "PLAYBOOK_WEBHOOK_SECRET"),
        ({"PLAYBOOK_WEBHOOK_SECRET": "django-insecure-playbook-webhook-dev-secret"}, "PLAYBOOK_WEBHOOK_SECRET"),
        ({"PLAYBOOK_WEBHOOK_SECRET": "too-short-to-sign-with"}, "PLAYBOOK_WEBHOOK_SECRET"),
        ({"PLAYBOOK_WEBHOOK_SECRET": GOOD_ENV["SECRET_KEY"]}, "PLAYBOOK_WEBHOOK_SECRET must differ from SECRET_KEY"),
    ],
)
def test_production_refuses_unsafe_configuration(override, message):
    result = run_manage("check", **override)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


SIGNING_KEYS = (
    "from django.conf import settings as s; print(s.PLAYBOOK_WEBHOOK_SECRET == s.SECRET_KEY, s.PLAYBOOK_WEBHOOK_SECRET)"
)


@pytest.mark.parametrize(
    ("settings_module", "webhook_secret", "expected"),
    [
        ("churnshield.settings.production", WEBHOOK_SECRET, ["False", WEBHOOK_SECRET]),
        ("churnshield.settings.local", None, ["False", "django-insecure-playbook-webhook-dev-secret"]),
        ("churnshield.settings.test", None, ["False", "django-insecure-playbook-webhook-dev-secret"]),
    ],
)
def test_webhook_signing_secret_is_never_the_secret_key(settings_module, webhook_secret, expected):
    """Every webhook receiver holds the signing secret: it must not be the key that signs sessions."""
    result = run_manage(
        "shell", "-v0", "-c", SIGNING_KEYS, DJANGO_SETTINGS_MODULE=settings_module,
        PLAYBOOK_WEBHOOK_SECRET=webhook_secret, DATABASE_URL="sqlite:////tmp/unused.sqlite3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == expected


@pytest.mark.parametrize("database_url", [None, ""])
def test_unset_or_empty_database_url_means_the_embedded_sqlite_file(database_url):
    code = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    result = run_manage(
        "shell", "-c", code, DJANGO_SETTINGS_MODULE="churnshield.settings.local", DATABASE_URL=database_url
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "django.db.backends.sqlite3"


@pytest.mark.parametrize(
    ("redis_url", "expected"),
    [
        (None, ["True", "InMemoryChannelLayer", "LocMemCache", "memory://"]),
        ("redis://127.0.0.1:6379/7", ["False", "RedisPubSubChannelLayer", "RedisCache", "redis://127.0.0.1:6379/7"]),
    ],
    ids=["embedded", "redis"],
)
def test_redis_url_switches_tasks_channel_layer_and_cache(redis_url, expected):
    """Without REDIS_URL tasks run in-process and the channel layer and cache live in memory;
    with it all three use Redis (nothing connects here: the settings alone are read)."""
    code = (
        "from django.conf import settings as s; from churnshield.celery import app;"
        "print(s.CELERY_TASK_ALWAYS_EAGER, s.CHANNEL_LAYERS['default']['BACKEND'].rsplit('.', 1)[1],"
        " s.CACHES['default']['BACKEND'].rsplit('.', 1)[1], app.conf.broker_url or 'memory://')"
    )
    result = run_manage(
        "shell", "-c", code, DJANGO_SETTINGS_MODULE="churnshield.settings.local", DATABASE_URL=None, REDIS_URL=redis_url
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == expected


def test_env_example_documents_every_variable_the_settings_read():
    import re

    read = set()
    for path in (ROOT / "churnshield" / "settings").glob("*.py"):
        read |= set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', path.read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read - documented == set()


@pytest.mark.parametrize(
    ("redis_url", "prefix", "expected"),
    [
        ("redis://127.0.0.1:6379/3", None, "churnshield/3"),
        ("redis://127.0.0.1:6379/4", None, "churnshield/4"),
        ("redis://127.0.0.1:6379", None, "churnshield/0"),
        ("redis://127.0.0.1:6379/3", "tenant-a", "tenant-a"),
    ],
)
def test_live_feed_channels_are_separated_per_redis_db(redis_url, prefix, expected):
    # Redis pub/sub channels ignore the db number: two deployments on one server must not share groups.
    code = "from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['CONFIG']['prefix'])"
    env = {"REDIS_URL": redis_url, "DATABASE_URL": "sqlite:////tmp/unused.sqlite3"}
    if prefix:
        env["CHANNELS_PREFIX"] = prefix
    result = run_manage("shell", "-v0", "-c", code, **env)
    assert result.stdout.strip().splitlines()[-1] == expected, result.stderr


ROUTING_PROBE = """
from churnshield.celery import app
route = lambda name: app.amqp.router.route({}, name)["queue"].name
print(route("playbooks.tasks.claim_due_executions"), route("playbooks.tasks.run_playbook_executions"),
      route("predictions.tasks.score_all_customers"), route("integrations.tasks.sweep_webhooks"),
      route("alerts.tasks.fan_out_alerts"), route("churnshield.tasks.flush_expired_tokens"))
print(",".join(app.amqp.queues.consume_from), app.conf.worker_concurrency,
      app.conf.broker_transport_options["queue_order_strategy"])
"""


def test_queue_routing_worker_queues_and_concurrency_come_from_the_environment():
    queues = {
        "CELERY_SCORING_QUEUE": "scoring", "CELERY_SYNCS_QUEUE": "syncs",
        "CELERY_NOTIFICATIONS_QUEUE": "notifications", "PLAYBOOK_QUEUE": "playbooks",
        "PLAYBOOK_CLAIM_QUEUE": "playbooks-claim", "PLAYBOOK_DUE_QUEUE": "playbooks-due",
    }  # fmt: skip
    result = run_manage("shell", "-c", ROUTING_PROBE, **queues, CELERY_WORKER_CONCURRENCY="6")
    assert result.returncode == 0, result.stderr
    routes, consume = result.stdout.strip().splitlines()[-2:]
    assert routes.split() == ["playbooks-claim", "playbooks", "scoring", "syncs", "notifications", "celery"]
    # A worker without -Q takes due work first and scoring last, six processes, in priority order.
    assert consume.split() == [
        "playbooks-claim,playbooks-due,notifications,celery,playbooks,syncs,scoring",
        "6",
        "priority",
    ]
    # One host consumes only what it is told; the raw JSON routes still win over the named queues.
    result = run_manage(
        "shell", "-c", ROUTING_PROBE, **queues, CELERY_WORKER_QUEUES="scoring",
        CELERY_TASK_ROUTES='{"predictions.tasks.*": {"queue": "ml"}}',
    )  # fmt: skip
    routes, consume = result.stdout.strip().splitlines()[-2:]
    assert routes.split()[2] == "ml" and consume.split()[0] == "scoring"
    # Nothing configured: everything on the default queue, as before.
    result = run_manage("shell", "-c", ROUTING_PROBE)
    routes, consume = result.stdout.strip().splitlines()[-2:]
    assert set(routes.split()) == {"celery"} and consume.split()[:2] == ["celery", "2"]


@pytest.mark.parametrize(
    ("direct_url", "pooled", "expected"),
    [
        (None, None, ["False", "None", "-c statement_timeout=900000"]),
        ("postgres://app@db.example.com/app", None, ["True", "True", "None"]),
        ("postgres://app@db.example.com/app", "", ["True", "True", "None"]),  # as copied from .env.example
        ("postgres://app@db.example.com/app", "false", ["False", "None", "-c statement_timeout=900000"]),
        (None, "true", ["True", "True", "None"]),
    ],
    ids=["direct", "direct-url-set", "pooled-empty", "pooled-off", "pooled-on"],
)
def test_a_pooled_database_url_holds_no_session_state(direct_url, pooled, expected):
    """Behind a transaction-mode pooler: no server-side cursors, no prepared statements, no startup
    `options` (PgBouncer refuses them). Nothing connects here: the settings alone are read."""
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "assert d['OPTIONS'].get('prepare_threshold', None) is None;"
        "print(s.DATABASE_POOLED, d.get('DISABLE_SERVER_SIDE_CURSORS'), '|', d['OPTIONS'].get('options'))"
    )
    result = run_manage(
        "shell", "-c", code, DJANGO_SETTINGS_MODULE="churnshield.settings.local",
        DATABASE_URL="postgres://app@pooler.example.com:6543/app", DATABASE_DIRECT_URL=direct_url,
        DATABASE_POOLED=pooled,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    flags, options = result.stdout.strip().splitlines()[-1].split(" | ")
    assert [*flags.split(), options] == expected
