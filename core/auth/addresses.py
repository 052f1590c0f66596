"""The client's address, as far as the proxies we trust can vouch for it.

Each reverse proxy appends the address it received the request from to X-Forwarded-For, so only
the last TRUSTED_PROXY_COUNT entries were written by machines we run: anything to their left is
whatever the client chose to send. With no proxy trusted (the default) the peer address
(REMOTE_ADDR) is the client. The login throttle, django-axes (AXES_CLIENT_IP_CALLABLE) and the
one-attempt-at-a-time lock all key by this one answer, so a forged header moves none of them.
"""

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The address the nearest untrusted hop connected from."""
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return request.META.get("REMOTE_ADDR", "")
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < trusted:
        # Fewer hops than proxies: the request did not come through all of them (or the header
        # was stripped), so the nearest address we can vouch for is the peer's.
        return request.META.get("REMOTE_ADDR", "")
    return forwarded[-trusted]
