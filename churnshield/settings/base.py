"""Settings shared by every environment, read from the environment (django-environ).

Embedded defaults (no DATABASE_URL / REDIS_URL): a SQLite file, Celery tasks run
in-process, an in-memory channel layer. See `.env.example` for every variable.
"""

import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import environ
import orjson
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from kombu import Queue

from monitoring.logs import build_logging

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-local-development-only-key")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "workspace.apps.WorkspaceAdminConfig",  # django.contrib.admin, home = the workspace
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us (no CDN)
    "corsheaders",
    "axes",
    "django_celery_beat",
    "channels",
    "core",  # sign-in, roles, API plumbing; imports no domain app
    "churnshield",  # the project's templates, static files and sync_schedules
    "customers",
    "interventions",
    "playbooks",
    "predictions",
    "integrations",
    "alerts",
    "django_prometheus",  # request counts and latency per view on /metrics
    "monitoring",  # health, metrics, logs, backups, retention
    "dashboard",  # the React app's dashboard endpoints
    "demo",  # seed_demo, demo_user
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # first, to time everything
    "monitoring.middleware.RequestIdMiddleware",  # X-Request-ID in/out and the access log; early, so log lines carry it
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",  # SECURE_CSP on every response
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "core.middleware.RejectNulBytesMiddleware",
    "core.auth.middleware.RenewedAuthCookiesMiddleware",  # the sliding session's new cookies
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lock-out into a response.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # last, to time everything
]

ROOT_URLCONF = "churnshield.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "churnshield.asgi.application"
APPEND_SLASH = False  # the contract has no trailing slashes; a redirect would break POSTs

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "churnshield" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",  # csp_nonce for the few inline scripts
            ],
        },
    },
]

# An empty DATABASE_URL (`DATABASE_URL=` in .env or the shell) means "not set": the embedded default.
# DATABASE_URL is what every process uses; it may go through a transaction-mode pooler (PgBouncer,
# Neon's `-pooler` host, Supabase's port 6543). DATABASE_DIRECT_URL reaches PostgreSQL itself, for
# what needs a session of its own: `manage.py migrate`, `dbshell`, backups and restores (pg_dump
# and pg_restore set session state and hold one snapshot). Setting it marks DATABASE_URL as pooled.
DATABASE_DIRECT_URL = env.str("DATABASE_DIRECT_URL", default="")
# Empty (as in .env.example) means "not set", like DATABASE_URL: django-environ reads "" as false.
DATABASE_POOLED = env.bool("DATABASE_POOLED") if env.str("DATABASE_POOLED", default="") else bool(DATABASE_DIRECT_URL)
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'churnshield.sqlite3'}"
    ),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every request's sync code runs in a fresh thread, so per-thread persistent
    # connections would pile up until PostgreSQL refuses clients: use psycopg's pool instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": env.int("DB_POOL_TIMEOUT", default=10),
    }
    # The pool tests a connection before handing it out, so a PostgreSQL restart or
    # a terminated backend costs no failed request or task (one empty round trip per checkout).
    # Django's backend, except that a failed test sweeps the pool's other dead connections at
    # once instead of the next checkouts finding them one by one (core/postgresql/base.py).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=True)
    DATABASES["default"]["ENGINE"] = "core.postgresql"
    # Never wait forever on the network: a black-holed link would hang a worker. A connect gives
    # up after this; a statement is cancelled by the server after this (0 = none); keepalives
    # notice a peer that vanished.
    options = DATABASES["default"]["OPTIONS"]
    options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT_SECONDS", default=5))
    statement_ms = int(env.float("DB_STATEMENT_TIMEOUT_SECONDS", default=900) * 1000)
    if DATABASE_POOLED:
        # A transaction-mode pooler hands each transaction to any server connection: nothing may
        # outlive a transaction. Django's `.iterator()` would hold a server-side cursor (WITH HOLD
        # outside a transaction), psycopg's prepared statements live in one server session, and
        # PgBouncer refuses the `options` startup parameter, so the statement timeout is the
        # role's (`ALTER ROLE … SET statement_timeout`, see docs/deploying.md).
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
        options["prepare_threshold"] = None
    else:
        options["options"] = f"{options.get('options', '')} -c statement_timeout={statement_ms}".strip()
    keepalives = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    for key, value in keepalives.items():
        options.setdefault(key, value)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the seeder, the web process and in-process tasks share one file.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"  # the specification's SERIAL keys

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "core.auth.backends.UsernameOrEmailBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Content-Security-Policy on every response (ContentSecurityPolicyMiddleware): scripts and styles
# only from this origin, inline ones only with the request's nonce (the Swagger UI start-up
# script); no outside host anywhere. `data:` images are Swagger UI's icons; 'self' covers the
# admin bell's same-origin WebSocket.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # `make run` serves admin assets without collectstatic
# Until `collectstatic` has run (the build step in production), WhiteNoise warns at every start
# that STATIC_ROOT is missing although the finders serve every asset.
warnings.filterwarnings("ignore", message="No directory at: ")

# Request bodies: the CSV import is the largest legitimate one.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)
# History imports uploaded through the API or the admin (files stream to a temporary file, then
# into the database in 4 MiB chunks). Larger books: `manage.py import_history` on a host.
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=1024 * 1024 * 1024)
IMPORT_MAX_FILES = env.int("IMPORT_MAX_FILES", default=20)

# --- Cache (login throttling, axes) -------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Error reports (the DEBUG page, error e-mails) mask passwords inside URL values too, not only
# settings named like secrets: REDIS_URL alone is copied into four other settings.
DEFAULT_EXCEPTION_REPORTER_FILTER = "core.debug.UrlCredentialsReporterFilter"
# Every Redis client gives up on a dead connection instead of waiting forever (a hung publish would hold a request).
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=10.0)
REDIS_CONNECT_TIMEOUT_SECONDS = env.float("REDIS_CONNECT_TIMEOUT_SECONDS", default=5.0)
# The cache answers in well under a millisecond: waiting longer only delays the fall-back below.
REDIS_CACHE_TIMEOUT_SECONDS = env.float("REDIS_CACHE_TIMEOUT_SECONDS", default=1.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_timeout": REDIS_CACHE_TIMEOUT_SECONDS,
                "socket_connect_timeout": REDIS_CACHE_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CACHES |= {
    # Sign-in's counters (login throttle, one-attempt lock): the default cache, or the database
    # while it is unreachable, so a Redis outage neither fails sign-in nor lifts its limits.
    "signin": {
        "BACKEND": "core.cache.FailoverCache",
        "OPTIONS": {"PRIMARY": "default", "FALLBACK": "signin_db"},
    },
    "signin_db": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "churnshield_signin_cache",
        # Past MAX_ENTRIES Django deletes a third of the rows: throttle histories with them. One
        # row per client address (plus a short-lived lock per attempt) stays far below this.
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
}

# --- Client address ---------------------------------------------------------------------------
# How many reverse proxies in front of the app append to X-Forwarded-For. 0: none is trusted and
# the client is the peer address (REMOTE_ADDR); the header is ignored. The login throttle, axes'
# lock-out and the one-attempt lock all use this (core/auth/addresses.py).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.auth.authentication.JWTBearerOrCookieAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["core.auth.permissions.RoleBasedPermission"],
    "DEFAULT_RENDERER_CLASSES": ["drf_orjson_renderer.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.BoundedJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["core.api.filters.FilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.LinkHeaderPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Other throttles read the client address from X-Forwarded-For as the login throttle does.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_RATES": {
        "login": env.str("LOGIN_THROTTLE_RATE", default="20/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # A UTC datetime renders as `2026-12-04T18:00:00Z` (microseconds only when non-zero): what
    # `customers.selectors.iso` and DRF's own rendering give, without a Python call per value.
    "ORJSON_RENDERER_OPTIONS": (orjson.OPT_UTC_Z,),
}
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=100)
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=1000)
# Rows in a list requested without `page`/`per_page` (clients that do not page get every row).
API_UNPAGED_MAX = env.int("API_UNPAGED_MAX", default=10000)

SPECTACULAR_SETTINGS = {
    "TITLE": "ChurnShield API",
    "DESCRIPTION": "Churn prediction and prevention for B2B SaaS customer-success teams.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema is the API's inventory: signed-in users only (contract: only health checks and
    # signed webhooks are anonymous).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_AUTHENTICATION": None,
    # Swagger UI from the pinned drf-spectacular-sidecar package, served by WhiteNoise: no CDN,
    # so the docs work offline and the CSP names no outside host.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation documents the error responses it can send, so clients and the schema fuzzer know them.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema_hooks.add_error_responses",
        "core.api.schema_hooks.add_body_rules",
        # Served by the ASGI receiver before Django's URL conf, so described by hand.
        "integrations.api.schema.add_webhook_route",
    ],
    "ENUM_NAME_OVERRIDES": {
        # low/medium/high is shared by risk levels, priorities and impacts.
        "LevelEnum": "customers.models.RiskLevel",
        "InterventionStatusEnum": "interventions.models.Intervention.Status",
        "IntegrationStatusEnum": "integrations.models.Integration.Status",
        "AlertSeverityEnum": "alerts.models.Alert.Severity",  # alerts and notification preferences
        "TimeZoneEnum": "core.api.fields.TIME_ZONE_NAMES",  # preferences' timeZone, imports' timezone
    },
}

# --- JWT sign-in (contract: tokens in body and HttpOnly cookies) ------------------------------
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "ALGORITHM": "HS256",
    "CHECK_REVOKE_TOKEN": True,  # a password change revokes every token issued before it
}
AUTH_COOKIE_ACCESS = "cs_access"
AUTH_COOKIE_REFRESH = "cs_refresh"
AUTH_COOKIE_SECURE = env.bool("AUTH_COOKIE_SECURE", default=not DEBUG)
# "Lax" when the app is on the API's origin or site; "None" (implies Secure) for an app hosted on
# another site, whose browser would not send Lax cookies on its cross-site calls. Either way,
# cookie-authenticated writes must come from TRUSTED_ORIGINS.
AUTH_COOKIE_SAMESITE = env.str("AUTH_COOKIE_SAMESITE", default="Lax").capitalize()
if AUTH_COOKIE_SAMESITE not in ("Lax", "Strict", "None"):
    raise ImproperlyConfigured(f"AUTH_COOKIE_SAMESITE must be Lax, Strict or None, not {AUTH_COOKIE_SAMESITE!r}")
# The sliding session: parallel requests renewing from one refresh cookie within this many seconds
# of its rotation get a sibling token instead of revoking the sign-in as a reused token.
AUTH_REFRESH_REUSE_GRACE = timedelta(seconds=env.int("AUTH_REFRESH_REUSE_GRACE_SECONDS", default=30))
# Origins allowed to make cookie-authenticated unsafe requests (CSRF defence) and CORS calls.
TRUSTED_ORIGINS = env.list(
    "TRUSTED_ORIGINS", default=["http://localhost:8000", "http://127.0.0.1:8000", "http://localhost:5173"]
)
CSRF_TRUSTED_ORIGINS = TRUSTED_ORIGINS
CORS_ALLOWED_ORIGINS = TRUSTED_ORIGINS
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = r"^/(api|model)/.*$"
CORS_EXPOSE_HEADERS = ["Link", "X-Total-Count"]

# --- django-axes: lock-out after repeated failed logins per (username, IP) --------------------
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The cool-off runs from the lock, not from the last refused try: attempts while locked are refused
# before any hashing, so extending the lock gains nothing against a guesser and only keeps a
# user who retries (the right password included) locked out past the time the 429 announced.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "core.auth.views.lockout_response"
# Failures count against the account, whatever spelling of its e-mail address reached authenticate().
AXES_USERNAME_CALLABLE = "core.auth.attempts.axes_username"
AXES_CLIENT_IP_CALLABLE = "core.auth.addresses.client_ip"  # TRUSTED_PROXY_COUNT, as the throttle
AXES_VERBOSE = False

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
# One result backend per process, not per thread: the ASGI server runs each request on a thread of
# its own, and a backend built per request cost a real-time predict's publish several times the
# publish itself. No web process waits on a result (`enqueue` publishes with ignore_result).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
# No broker configured: run tasks in-process (the embedded topology).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 15 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 14 * 60
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Channels ---------------------------------------------------------------------------------
if REDIS_URL:
    # Pub/sub layer: one Redis connection per process for all sockets (the default
    # RedisChannelLayer failed 200 simultaneous connects with "Too many connections").
    # Pub/sub channels are server-wide (the URL's db number does not separate them), so the
    # prefix carries it: two deployments (or test runs) on one Redis never see each other's alerts.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                # Connect timeout only: the pub/sub reader blocks on its socket between messages.
                "hosts": [{"address": REDIS_URL, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS}],
                "prefix": env.str("CHANNELS_PREFIX", default="") or f"churnshield{urlparse(REDIS_URL).path or '/0'}",
            },
        }
    }
else:
    # A full in-memory channel drops messages silently (default capacity 100): a scoring batch
    # raises hundreds of alerts at once.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}}

# --- Product knobs ----------------------------------------------------------------------------
RISK_HIGH_THRESHOLD = env.float("RISK_HIGH_THRESHOLD", default=0.8)
RISK_MEDIUM_THRESHOLD = env.float("RISK_MEDIUM_THRESHOLD", default=0.5)
# A trained model's bands, relative to its book's churn rate (stored with the model version; the
# fixed thresholds above serve the rules baseline): high = the top RISK_HIGH_TOP_SHARE of
# calibrated risk or >= RISK_HIGH_BASE_MULTIPLE x the base rate, medium >= RISK_MEDIUM_BASE_MULTIPLE x.
RISK_HIGH_TOP_SHARE = env.float("RISK_HIGH_TOP_SHARE", default=0.10)
RISK_HIGH_BASE_MULTIPLE = env.float("RISK_HIGH_BASE_MULTIPLE", default=3.0)
RISK_MEDIUM_BASE_MULTIPLE = env.float("RISK_MEDIUM_BASE_MULTIPLE", default=1.5)
# Drift of a batch: the mean PSI of the champion's features against its training data. At
# DRIFT_MAJOR_PSI or more the drift is major and (DRIFT_RETRAIN) a retrain is enqueued after the
# batch, at most once a day; the new model replaces the champion only if it wins as usual.
DRIFT_MODERATE_PSI = env.float("DRIFT_MODERATE_PSI", default=0.1)
DRIFT_MAJOR_PSI = env.float("DRIFT_MAJOR_PSI", default=0.25)
DRIFT_RETRAIN = env.bool("DRIFT_RETRAIN", default=True)

INTERVENTION_COST = env.float("INTERVENTION_COST", default=150.0)  # $ of CSM time per intervention

# --- Notifications (email, Slack, Teams) -----------------------------------------------------
# Email goes through Django's mail framework: SMTP when EMAIL_HOST is set, else printed to the
# console (the embedded topology). Noise-control knobs live in the database (NotificationSettings).
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ChurnShield <alerts@localhost>")
# Base URL of links in notifications (the admin's alert page).
NOTIFICATIONS_SITE_URL = env.str("NOTIFICATIONS_SITE_URL", default="http://127.0.0.1:8000")
# SSRF guard escape hatch for tests with a loopback receiver: lets webhook URLs resolve to
# 127.0.0.1/::1 (and use plain http there). Production settings force it off.
NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK = env.bool("NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK", default=False)
# An alert whose fan-out has not run this long after it was raised is fanned out by the beat sweep
# (its enqueue was lost, e.g. the broker was down at commit).
NOTIFICATIONS_FAN_OUT_GRACE_SECONDS = env.int("NOTIFICATIONS_FAN_OUT_GRACE_SECONDS", default=60)

# --- Playbooks -----------------------------------------------------------------------------------
# A worker's claim on an execution lasts this long; a killed worker's execution is claimed again after it.
PLAYBOOK_LEASE_SECONDS = env.int("PLAYBOOK_LEASE_SECONDS", default=60)
# An execution handed to the broker but not yet taken by a worker: after this the claimer presumes the
# message lost and hands it out again. Longer than any queue backlog, so a burst never expires in it.
PLAYBOOK_QUEUED_LEASE_SECONDS = env.int("PLAYBOOK_QUEUED_LEASE_SECONDS", default=900)
# Transient step failures (webhook 5xx/timeouts, SMTP 4xx) retry with exponential backoff, then fail.
PLAYBOOK_MAX_ATTEMPTS = env.int("PLAYBOOK_MAX_ATTEMPTS", default=5)
PLAYBOOK_RETRY_BASE_SECONDS = env.float("PLAYBOOK_RETRY_BASE_SECONDS", default=10.0)
PLAYBOOK_RETRY_MAX_SECONDS = env.float("PLAYBOOK_RETRY_MAX_SECONDS", default=600.0)
PLAYBOOK_CLAIM_BATCH = env.int("PLAYBOOK_CLAIM_BATCH", default=500)
# After its claim, the beat's claimer keeps following due times (sleeping until the next one, by the
# database's clock) for this long, so waits start when due rather than at the next beat tick. Keep it
# below the claim interval when the claim shares a worker's processes; 0 = claim at the tick only.
PLAYBOOK_CLAIM_FOLLOW_SECONDS = env.float("PLAYBOOK_CLAIM_FOLLOW_SECONDS", default=10.0)
# Executions per Celery task (enrolment and the claimer); small enough that due work never waits long.
PLAYBOOK_DISPATCH_CHUNK = env.int("PLAYBOOK_DISPATCH_CHUNK", default=10)
# Smaller chunks for due waits: the last wait of a chunk runs later by the time the ones before it take.
PLAYBOOK_DUE_DISPATCH_CHUNK = env.int("PLAYBOOK_DUE_DISPATCH_CHUNK", default=5)
PLAYBOOK_EMAIL_TIMEOUT_SECONDS = env.float("PLAYBOOK_EMAIL_TIMEOUT_SECONDS", default=10.0)
# Customer e-mails one auto-sending playbook may send in 24 hours; past it they wait for review.
PLAYBOOK_CUSTOMER_EMAIL_DAILY_CAP = env.int("PLAYBOOK_CUSTOMER_EMAIL_DAILY_CAP", default=50)
# Tasks (interventions) a playbook creates are due this many days later unless the step says otherwise.
PLAYBOOK_TASK_DUE_DAYS = env.int("PLAYBOOK_TASK_DUE_DAYS", default=3)
# Signs outgoing webhook bodies (HMAC-SHA256). Every receiver holds it, so it is a secret of its own:
# were it SECRET_KEY, a receiver could forge sessions, password-reset links and signed cookies.
# The default serves local development and tests; production settings require a real one.
PLAYBOOK_WEBHOOK_SECRET = env.str("PLAYBOOK_WEBHOOK_SECRET", default="django-insecure-playbook-webhook-dev-secret")
# Webhook steps reach public addresses only, over https (the notifications' SSRF-guarded client);
# this lets loopback receivers through, plain http included (local development and tests only;
# production forces it off).
PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = env.bool("PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK", default=False)
# Queue for executions the claimer resumes (due waits, retries); empty = the default queue.
PLAYBOOK_DUE_QUEUE = env.str("PLAYBOOK_DUE_QUEUE", default="")

# --- Integrations: pull syncs and webhooks -------------------------------------------------------
INTEGRATION_SYNC_MINUTES = env.int("INTEGRATION_SYNC_MINUTES", default=15)  # default pull interval
INTEGRATION_SYNC_LEASE_SECONDS = env.int("INTEGRATION_SYNC_LEASE_SECONDS", default=3600)
INTEGRATION_HTTP_TIMEOUT_SECONDS = env.float("INTEGRATION_HTTP_TIMEOUT_SECONDS", default=20.0)
INTEGRATION_HTTP_ATTEMPTS = env.int("INTEGRATION_HTTP_ATTEMPTS", default=5)
INTEGRATION_RETRY_BASE_SECONDS = env.float("INTEGRATION_RETRY_BASE_SECONDS", default=1.0)
INTEGRATION_RETRY_MAX_SECONDS = env.float("INTEGRATION_RETRY_MAX_SECONDS", default=60.0)
INTEGRATION_RETRY_AFTER_CAP_SECONDS = env.float("INTEGRATION_RETRY_AFTER_CAP_SECONDS", default=120.0)
WEBHOOK_TOLERANCE_SECONDS = env.int("WEBHOOK_TOLERANCE_SECONDS", default=300)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=3600.0)
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=300)
WEBHOOK_DRAIN_DEBOUNCE_SECONDS = env.int("WEBHOOK_DRAIN_DEBOUNCE_SECONDS", default=1)
WEBHOOK_DRAIN_BATCH = env.int("WEBHOOK_DRAIN_BATCH", default=500)
WEBHOOK_DRAIN_MAX_BATCHES = env.int("WEBHOOK_DRAIN_MAX_BATCHES", default=50)
WEBHOOK_SWEEP_GRACE_SECONDS = env.int("WEBHOOK_SWEEP_GRACE_SECONDS", default=30)
# The ASGI receiver answers within this (503 if storing took longer: the provider retries) and
# runs up to this many store statements at once per process.
WEBHOOK_RECEIVE_TIMEOUT_SECONDS = env.float("WEBHOOK_RECEIVE_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_STORE_CONCURRENCY = env.int("WEBHOOK_STORE_CONCURRENCY", default=4)
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=30)  # never below 7 (dedupe window)

# --- Monitoring and maintenance -----------------------------------------------------------------
# Structured JSON logs (LOG_FORMAT=text for a human-readable console) with request ids, no secrets.
LOGGING = build_logging(
    level=env.str("LOG_LEVEL", default="INFO"), json=env.str("LOG_FORMAT", default="json") == "json"
)
# Error tracking: on when SENTRY_DSN is set.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from monitoring.sentry import init_sentry  # only when set: the SDK is a large import

    init_sentry(
        dsn=SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# /metrics: a bearer token and/or source networks (CIDR). Production defaults to no networks.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
# Metric sources: `collect()` functions of each app (see monitoring/metrics.py). Append yours.
MONITORING_METRIC_SOURCES = [
    "monitoring.sources.celery_metrics",
    "monitoring.sources.backup_metrics",
    "predictions.metrics.collect",
    "alerts.metrics.collect",
    "integrations.metrics.collect",
    "playbooks.metrics.collect",
]
MONITORING_METRICS_CACHE_SECONDS = env.int("MONITORING_METRICS_CACHE_SECONDS", default=15)
PROMETHEUS_EXPORT_MIGRATIONS = False  # django-prometheus would query the migration table at startup

# /readyz: which checks, and how stale beat and the daily batch may be.
READYZ_CHECKS = env.list(
    "READYZ_CHECKS", default=["database", "redis", "broker", "worker", "beat", "champion_model", "last_batch"]
)
READYZ_BEAT_MAX_AGE_SECONDS = env.int("READYZ_BEAT_MAX_AGE_SECONDS", default=120)
READYZ_BATCH_MAX_AGE_HOURS = env.float("READYZ_BATCH_MAX_AGE_HOURS", default=26)

# Backups (manage.py backup_db / restore_db, and daily by beat).
BACKUP_DIR = env.str("BACKUP_DIR", default=str(BASE_DIR / "backups"))
BACKUP_KEEP = env.int("BACKUP_KEEP", default=7)

# Retention: job name -> function(cutoff) and its age in days. Raw webhook events have their own
# daily job (integrations-webhook-purge-daily, WEBHOOK_RETENTION_DAYS, never under the 7-day dedupe window).
RETENTION_JOBS = {
    "read_alerts": "alerts.services.alerts_purge_read",
    "session_actions": "customers.services.session_actions_compact",
    "retired_model_artifacts": "predictions.services.history.model_artifacts_drop_retired",
    "task_attempts": "monitoring.services.purge_finished_task_attempts",
    "prediction_history_weekly": "predictions.services.history.thin_predictions_weekly",
    "prediction_history_monthly": "predictions.services.history.thin_predictions_monthly",
}
RETENTION_DAYS = {
    "read_alerts": env.int("RETENTION_READ_ALERTS_DAYS", default=90),
    "session_actions": env.int("RETENTION_SESSION_ACTIONS_DAYS", default=400),
    "retired_model_artifacts": env.int("RETENTION_MODEL_ARTIFACTS_DAYS", default=30),
    "task_attempts": env.int("RETENTION_TASK_ATTEMPTS_DAYS", default=14),
    # Older predictions: one per customer per week, then per month (predictions/services/history.py).
    "prediction_history_weekly": env.int("RETENTION_PREDICTIONS_WEEKLY_DAYS", default=90),
    "prediction_history_monthly": env.int("RETENTION_PREDICTIONS_MONTHLY_DAYS", default=400),
}
ANALYZE_AFTER_ROWS = env.int("ANALYZE_AFTER_ROWS", default=10000)

# Celery reliability: late acks (set above), one message at a time per process, time limits under
# the broker's visibility timeout (else Redis redelivers a still-running task), a single beat
# behind a lock, UTC. `reject_on_worker_lost` only on GuardedTask (idempotent, poison-guarded).
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=4500)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # kombu >= 5.6: scan for unacked messages of dead workers every 10 s (default ~100 s).
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": 1,
    # kombu waits forever on an unanswered publish without these (its docs); BRPOP polls every
    # second, well inside the socket timeout.
    "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
}
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT_SECONDS
CELERY_REDIS_SOCKET_TIMEOUT = REDIS_SOCKET_TIMEOUT_SECONDS
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_CONNECT_TIMEOUT_SECONDS
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env.float("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", default=10.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that lost the broker retries until it is back, however long that takes (default: 100 tries).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep our JSON logging in workers
CELERY_ENABLE_UTC = True
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_RESULT_EXPIRES = env.int("CELERY_RESULT_EXPIRES", default=86400)
# Scaling is configuration: route each kind of work to a queue, choose which queues a host's
# workers consume (in priority order) and how many processes they run, without code changes.
# Empty queue names keep that work on the default queue ("celery"). CELERY_TASK_ROUTES (JSON) is
# merged last and wins, e.g. '{"predictions.tasks.*": {"queue": "scoring"}}'.
CELERY_SCORING_QUEUE = env.str("CELERY_SCORING_QUEUE", default="")  # batch scoring, training, re-scores
CELERY_SYNCS_QUEUE = env.str("CELERY_SYNCS_QUEUE", default="")  # integration pulls, webhook drains
CELERY_NOTIFICATIONS_QUEUE = env.str("CELERY_NOTIFICATIONS_QUEUE", default="")  # fan-out and sends
PLAYBOOK_QUEUE = env.str("PLAYBOOK_QUEUE", default="")  # fresh playbook executions
PLAYBOOK_CLAIM_QUEUE = env.str("PLAYBOOK_CLAIM_QUEUE", default="")  # the claimer (beat, every 15 s)
_ROUTED = [
    ("playbooks.tasks.claim_due_executions", PLAYBOOK_CLAIM_QUEUE),  # before playbooks.tasks.*: first match wins
    ("playbooks.tasks.*", PLAYBOOK_QUEUE),
    ("predictions.tasks.*", CELERY_SCORING_QUEUE),
    ("integrations.tasks.*", CELERY_SYNCS_QUEUE),
    ("alerts.tasks.*", CELERY_NOTIFICATIONS_QUEUE),
]
CELERY_TASK_ROUTES = {pattern: {"queue": queue} for pattern, queue in _ROUTED if queue}
CELERY_TASK_ROUTES.update(env.json("CELERY_TASK_ROUTES", default={}))
# The queues this host's workers consume when started without -Q, highest priority first, e.g.
# "playbooks-claim,playbooks-due,notifications,celery". Empty: every queue named above, in the order
# claim, due waits, notifications, the default queue, fresh playbooks, syncs, scoring.
CELERY_WORKER_QUEUES = env.list("CELERY_WORKER_QUEUES", default=[]) or list(
    dict.fromkeys(
        name
        for name in (PLAYBOOK_CLAIM_QUEUE, PLAYBOOK_DUE_QUEUE, CELERY_NOTIFICATIONS_QUEUE, "celery", PLAYBOOK_QUEUE,
                     CELERY_SYNCS_QUEUE, CELERY_SCORING_QUEUE, *(r["queue"] for r in CELERY_TASK_ROUTES.values()))
        if name
    )
)  # fmt: skip
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in CELERY_WORKER_QUEUES]
# "priority": a worker takes the first non-empty queue in the order above (due work before fresh
# work; a later queue waits while an earlier one is busy). "round_robin": kombu's default.
CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] = env.str("CELERY_QUEUE_ORDER_STRATEGY", default="priority")
# Processes per worker (prefork). I/O-bound queues (notifications, syncs) take more; scoring less.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
CELERY_BEAT_SCHEDULER = "monitoring.beat:LockedDatabaseScheduler"
# Write last_run_at to the database after every task beat sends (not every 3 min): a standby that
# takes over reads it, so nothing the dead holder already sent is sent again.
CELERY_BEAT_SYNC_EVERY = 1
BEAT_LOCK_TTL_SECONDS = env.int("BEAT_LOCK_TTL_SECONDS", default=30)
TASK_MAX_ATTEMPTS = env.int("TASK_MAX_ATTEMPTS", default=3)
