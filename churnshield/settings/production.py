"""Production: refuses to start without real secrets, with DEBUG on, or over plain HTTP cookies."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be set to a random value of at least 50 characters.")
# Receivers verify webhook signatures with it: never the dev default, never SECRET_KEY itself.
PLAYBOOK_WEBHOOK_SECRET = env.str("PLAYBOOK_WEBHOOK_SECRET", default="")
_webhook_secret = PLAYBOOK_WEBHOOK_SECRET
if not _webhook_secret or _webhook_secret.startswith("django-insecure") or len(_webhook_secret) < 32:
    raise ImproperlyConfigured("PLAYBOOK_WEBHOOK_SECRET must be set to a random value of at least 32 characters.")
if PLAYBOOK_WEBHOOK_SECRET == SECRET_KEY:
    raise ImproperlyConfigured("PLAYBOOK_WEBHOOK_SECRET must differ from SECRET_KEY (every webhook receiver holds it).")
DEBUG = env.bool("DEBUG", default=False)
if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production.")
if not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured("DATABASE_URL must be set in production.")

SIMPLE_JWT["SIGNING_KEY"] = env.str("JWT_SIGNING_KEY", default=SECRET_KEY)  # noqa: F405
AUTH_COOKIE_SECURE = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Webhook URLs must never reach loopback in production (SSRF guard; see alerts/notifications/webhooks.py).
NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK = False
PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = False


# /metrics needs METRICS_TOKEN or a listed network (none by default: closed unless configured);
# probes and scrapers may speak plain HTTP inside the cluster, so they are not redirected to HTTPS.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
