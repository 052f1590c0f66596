"""Django's DEBUG 500 page never shows a password written inside a URL-valued setting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_PASSWORD = "redis-pw-Quokka-7731"
DATABASE_PASSWORD = "db-pw-Wombat-4418"
BROKER_PASSWORD = "amqp-pw-Numbat-2290"
# Local settings (DEBUG on: the page a misconfigured deployment shows) derive the cache location,
# the result backend and the channel layer's hosts from REDIS_URL. The URL is also in request.META
# (under WSGI the process environment is) and in a local variable of the failing frame.
RENDER_500 = r"""
import sys
import django
django.setup()
from django.conf import settings
from django.test import RequestFactory
from django.views.debug import technical_500_response

def connect(url):
    raise ConnectionError("cache unreachable")

request = RequestFactory().get("/boom", REDIS_URL=settings.REDIS_URL, HTTP_ACCEPT=sys.argv[1])
try:
    connect(settings.REDIS_URL)
except ConnectionError:
    response = technical_500_response(request, *sys.exc_info())
assert settings.DEBUG and response.status_code == 500
sys.stdout.write(response.content.decode())
"""


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_debug_500_page_masks_passwords_inside_url_settings(accept):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "DEBUG"))}
    env |= {
        "DJANGO_SETTINGS_MODULE": "churnshield.settings.local",
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0",
        "DATABASE_URL": f"postgres://app:{DATABASE_PASSWORD}@db.internal:5432/churnshield",
        "CELERY_BROKER_URL": f"amqp://app:{BROKER_PASSWORD}@mq.internal:5672//",
    }
    result = subprocess.run(
        [sys.executable, "-c", RENDER_500, accept], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert (page.count(REDIS_PASSWORD), page.count(DATABASE_PASSWORD), page.count(BROKER_PASSWORD)) == (0, 0, 0)
    # The URLs are still there to debug with, the password alone replaced.
    masked = "redis://:********************@cache.internal:6379/0"
    # REDIS_URL, CACHES' LOCATION, CELERY_RESULT_BACKEND, the channel layer's host and META; the
    # HTML page also lists the failing frame's `url`.
    assert page.count(masked) == {"text/html": 6, "text/plain": 5}[accept]
    assert "amqp://app:********************@mq.internal:5672//" in page
