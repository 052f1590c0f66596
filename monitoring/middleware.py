"""Request id in and out (X-Request-ID), and one structured access-log line per request."""

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from monitoring.context import clean_request_id, request_id_var

HEADER = "X-Request-ID"
access_log = logging.getLogger("churnshield.access")


class RequestIdMiddleware:
    """Adopt the client's (or proxy's) X-Request-ID when it is well-formed, else mint one.

    The id is in a contextvar for the request's lifetime: every log line and every Celery task
    enqueued while handling it carries it. The response echoes it back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.headers.get(HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[HEADER] = request_id
            user = _user_if_known(request)
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,  # never the query string: it is where tokens would leak
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": user.pk if user is not None and user.is_authenticated else None,
                },
            )
            return response
        finally:
            request_id_var.reset(token)


def _user_if_known(request: HttpRequest):
    """The signed-in user if something already resolved it; never a session lookup of our own."""
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None
    return user
