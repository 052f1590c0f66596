"""The login throttle: per client address (trusted proxies only), counted where Redis is not needed."""

from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from core.auth.addresses import client_ip


class LoginRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle keyed by `client_ip` and counted in the `signin` cache (Redis, or the
    database while Redis is unreachable), so a Redis outage neither fails sign-in nor lifts the limit."""

    def __init__(self) -> None:
        self.cache = caches["signin"]
        super().__init__()

    @property
    def THROTTLE_RATES(self) -> dict[str, str | None]:
        # Read when used, not at import, so the rate follows the settings.
        return api_settings.DEFAULT_THROTTLE_RATES

    def get_ident(self, request: Request) -> str:
        return client_ip(request)
