"""Benchmark settings: production-like (DEBUG off, real PostgreSQL) plus a raw baseline route."""

from churnshield.settings.base import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "bench.urls"
AUTH_COOKIE_SECURE = False
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"login": "1000/min"}  # noqa: F405
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
