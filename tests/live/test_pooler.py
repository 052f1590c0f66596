"""The production topology behind a transaction-mode pooler, and over TLS.

Neon's and Supabase's pooled URLs are PgBouncer-style transaction pooling: each transaction may run
on another server connection, so nothing may outlive a transaction (session advisory locks,
server-side cursors, prepared statements, `SET`, startup `options`). These tests put a private
PgBouncer in transaction mode in front of the test database and run the web server, a worker,
beat (and the playbook claimer it schedules), webhooks and the batch through it; and run the
product against a private PostgreSQL that accepts TLS connections only (`sslmode=require`).
"""

import datetime as dt
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import connection, connections
from django.utils import timezone

from churnshield.celery import app
from customers.models import Customer
from integrations.models import Integration, WebhookEvent
from interventions.models import Intervention
from playbooks import engine, services
from playbooks.models import PlaybookExecution
from predictions.models import ChurnPrediction
from tests.faults.harness import PG_BIN, PrivatePostgres, _as_postgres
from tests.live.conftest import ROOT, VENV_BIN, eventually, free_port, postgres_address, service_env
from tests.live.pooler import PGBOUNCER, PgBouncer

pytestmark = [
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PgBouncer and TLS are PostgreSQL's"),
]
SECRET = "segment-pooler-secret"
PASSWORD = "s3cret-pass-123"


@pytest.fixture
def private_dir():
    """Not under pytest's tmp dir: that is private to root, and pgbouncer and PostgreSQL run as `postgres`."""
    base = Path(tempfile.mkdtemp(prefix="churnshield-pooler-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def bouncer(private_dir):
    if not PGBOUNCER or not PG_BIN:
        pytest.fail("pgbouncer and PostgreSQL's server binaries are required (.ci/run installs pgbouncer)")
    host, port = postgres_address()
    pooler = PgBouncer(private_dir / "pgbouncer", server_host=host, server_port=port)
    pooler.start()
    yield pooler
    pooler.stop()


def advisory_locks_held() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", [engine.FOLLOWER_LOCK_KEY]
        )
        return cursor.fetchone()[0]


def pooled_env(bouncer: PgBouncer, **extra: str) -> dict[str, str]:
    return service_env(DATABASE_URL=bouncer.url(connection.settings_dict["NAME"]), DATABASE_POOLED="true", **extra)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_pooled_setting_is_what_lets_a_process_through_pgbouncer(bouncer):
    """PgBouncer refuses the `options` startup parameter (the direct URL's statement timeout)."""
    check = "import django; django.setup(); from django.db import connection; connection.ensure_connection()"
    env = pooled_env(bouncer)
    ok = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, env={**env, "DATABASE_POOLED": "false"}, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "unsupported startup parameter: options" in refused.stderr


def test_one_following_claimer_at_a_time_and_no_lock_left_behind_a_transaction_pooler(bouncer):
    direct = connections["default"]
    pooled = direct.__class__(
        {
            **direct.settings_dict,
            "HOST": "127.0.0.1",
            "PORT": bouncer.port,
            "OPTIONS": {"prepare_threshold": None},  # no pool: the direct alias owns the process's pool
            "DISABLE_SERVER_SIDE_CURSORS": True,
        },
        "default",
    )
    other = psycopg.connect(bouncer.dsn(direct.settings_dict["NAME"]), autocommit=True)
    connections["default"] = pooled
    try:
        with engine.follower() as follows:
            with engine.follower() as second:
                assert (follows, second) == (True, False)
            # Another client's transaction takes a server connection (PgBouncer hands out the most
            # recently used one first) and keeps it while the follower leaves, so whatever the
            # follower sends on leaving runs on another server connection.
            other.execute("BEGIN")
            other.execute("SELECT 1")
        connections["default"] = direct
        assert advisory_locks_held() == 0
        other.execute("COMMIT")
        connections["default"] = pooled
        with engine.follower() as follows_again:
            assert follows_again is True
    finally:
        connections["default"] = direct
        pooled.close()
        other.close()


def test_web_worker_beat_claimer_webhooks_and_batch_through_pgbouncer(
    bouncer, start_process, redis_url, make_user, settings
):
    signed_up = timezone.now() - dt.timedelta(days=400)
    customers = Customer.objects.bulk_create(
        Customer(name=f"Pooled {n}", email=f"pooled{n}@example.com", plan="Pro", mrr=500, signup_date=signed_up)
        for n in range(600)  # above the COPY threshold: the batch writes scores through a temp table
    )
    manager = make_user("manager")
    segment = Integration.objects.create(
        name="Segment", type="analytics", config={"provider": "segment", "signing_secret": SECRET}
    )
    env = pooled_env(bouncer, REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false", PLAYBOOK_CLAIM_FOLLOW_SECONDS="2")
    manage(env, "sync_schedules")

    port = free_port()
    start_process(
        [str(VENV_BIN / "uvicorn"), "churnshield.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        "uvicorn-pooled",
    )
    start_process(
        [str(VENV_BIN / "celery"), "-A", "churnshield", "worker", "--pool", "prefork", "--concurrency", "2",
         "-n", "pooled@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        env,
        "celery-worker-pooled",
    )  # fmt: skip
    start_process(
        [str(VENV_BIN / "celery"), "-A", "churnshield", "beat", "--loglevel", "INFO",
         "--scheduler", "monitoring.beat:LockedDatabaseScheduler", "--schedule", "/dev/null"],
        env,
        "celery-beat-pooled",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, timeout=120, interval=0.2)

    with httpx.Client(base_url=base, timeout=10) as client:
        # Web: sign in, read a list (counts and pages), write.
        login = client.post("/api/auth/login", json={"username": manager.username, "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        listed = client.get("/api/customers", params={"page": 2, "per_page": 50}, headers=headers)
        assert (listed.status_code, listed.headers["X-Total-Count"], len(listed.json())) == (200, "600", 50)

        # Webhooks: received by the web process, applied by the worker.
        for n in range(20):
            body = json.dumps(
                {"messageId": f"pooled-{n}", "type": "track", "event": "Exported", "userId": f"u{n % 4}",
                 "context": {"traits": {"email": customers[n % 4].email}}}
            ).encode()  # fmt: skip
            signature = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
            response = client.post(
                f"/api/webhooks/segment/{segment.pk}",
                content=body,
                headers={"Content-Type": "application/json", "X-Signature": signature},
            )
            assert response.status_code == 200, response.text

    eventually(lambda: WebhookEvent.objects.filter(status="processed").count() == 20, timeout=60, interval=0.2)
    usage = dict(Customer.objects.filter(pk__in=[c.pk for c in customers[:4]]).values_list("email", "feature_usage"))
    assert usage == {c.email: {"Exported": 5} for c in customers[:4]}

    # Playbooks: the worker runs the first pass and parks the wait; beat's claimer resumes it.
    settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = True
    playbook = services.playbook_upsert(
        name="Pooled playbook",
        data={"steps": [{"key": "wait", "type": "wait", "duration": "1s"},
                        {"key": "task", "type": "create_intervention", "intervention_type": "Call"}]},
    )[0]  # fmt: skip
    app.conf.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False)
    try:
        execution = services.enrol(playbook=playbook, customer_ids=[customers[0].pk], trigger="manual")[0]
    finally:
        app.conf.update(task_always_eager=True)
    done = eventually(
        lambda: PlaybookExecution.objects.filter(pk=execution.pk, status="completed").exists(), timeout=90, interval=0.5
    )
    assert done
    assert list(Intervention.objects.filter(customer=customers[0]).values_list("type", flat=True)) == ["Call"]
    assert advisory_locks_held() == 0

    # The daily batch, through the pooler.
    manage(env, "score_customers")
    assert ChurnPrediction.objects.values("customer_id").distinct().count() == 600


@pytest.fixture
def tls_postgres(private_dir):
    """A private PostgreSQL with a self-signed certificate that refuses connections without TLS."""
    if not PG_BIN:
        pytest.fail("PostgreSQL's server binaries are required")
    server = PrivatePostgres(private_dir / "pg")
    server.init()
    data = server.data
    subprocess.run(
        _as_postgres(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", "/CN=127.0.0.1", "-keyout", str(data / "server.key"), "-out", str(data / "server.crt")]),
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    # TLS or nothing over TCP; the Unix socket (local) stays for the harness's own administration.
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
    )
    server.restart()
    yield server
    server.stop()


def test_the_product_runs_against_postgresql_over_tls_only(tls_postgres, start_process, tmp_path):
    url = f"postgres://postgres@127.0.0.1:{tls_postgres.port}/churnshield"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(f"{url}?sslmode=disable", connect_timeout=3).close()
    tls_url = f"{url}?sslmode=require"
    env = service_env(DATABASE_URL=tls_url, REDIS_URL="", DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    env.pop("REDIS_URL")
    # migrate runs on DATABASE_DIRECT_URL (here the pooled URL points nowhere: it must not be used).
    nowhere = "postgres://postgres@127.0.0.1:1/nowhere"
    manage({**env, "DATABASE_URL": nowhere, "DATABASE_DIRECT_URL": tls_url}, "migrate")
    manage(env, "createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com")

    port = free_port()
    start_process(
        [str(VENV_BIN / "uvicorn"), "churnshield.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        "uvicorn-tls",
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, timeout=120, interval=0.2)
    login = httpx.post(f"{base}/api/auth/login", json={"username": "root", "password": PASSWORD}, timeout=10)
    assert login.status_code == 200, login.text
    listed = httpx.get(f"{base}/api/customers", headers={"Authorization": f"Bearer {login.json()['access']}"})
    assert (listed.status_code, listed.headers["X-Total-Count"], listed.json()) == (200, "0", [])

    # Backups reach the server over TLS too (pg_dump gets the URL's sslmode).
    out = manage({**env, "BACKUP_DIR": str(tmp_path / "backups")}, "backup_db")
    assert len(list((tmp_path / "backups").glob("churnshield-*.dump"))) == 1, out
