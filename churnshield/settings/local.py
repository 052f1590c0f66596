"""Development and the embedded `make run` topology."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
AUTH_COOKIE_SECURE = env.bool("AUTH_COOKIE_SECURE", default=False)
