"""Under production settings /metrics is closed to anonymous callers, and probes are not redirected."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r"""
import django
django.setup()
from django.test import Client
print(Client().get("/metrics").status_code)
print(Client(REMOTE_ADDR="10.0.0.8").get("/metrics").status_code)
print(Client(headers={"Authorization": "Bearer prod-scrape-token-0123456789"}).get("/metrics").status_code)
print(Client(headers={"Authorization": "Bearer wrong"}).get("/metrics").status_code)
print(Client().get("/healthz").status_code)
print(Client().get("/api/customers").status_code)
"""


def run(**extra: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "METRICS_TOKEN")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "churnshield.settings.production",
            "SECRET_KEY": "x9!Kq2#vLm7@pR4$tW8^zN1&bC5*dF3(gH6)jY0-uE_iO+aS=eQ~rT|wV<yX>",
            "PLAYBOOK_WEBHOOK_SECRET": "synthetic-playbook-webhook-secret-for-deploy-checks",
            "DATABASE_URL": "sqlite:////tmp/churnshield-prod-metrics.sqlite3",
            "ALLOWED_HOSTS": "testserver",
            "TRUSTED_ORIGINS": "https://app.example.com",
            **extra,
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_production_metrics_need_the_token_and_probes_stay_on_http():
    # Anonymous, from a private address, wrong token: refused. Right token: served. /healthz over
    # plain HTTP answers (no HTTPS redirect for probes); the API still redirects to HTTPS.
    assert run(METRICS_TOKEN="prod-scrape-token-0123456789") == ["401", "401", "200", "401", "200", "301"]


def test_production_metrics_closed_without_configuration():
    assert run() == ["401", "401", "401", "401", "200", "301"]


def test_production_metrics_open_to_a_configured_network():
    assert run(METRICS_ALLOWED_NETWORKS="10.0.0.0/8") == ["401", "200", "401", "401", "200", "301"]
