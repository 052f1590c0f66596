"""Sets the cookies of a sliding-session renewal on the response of the request that renewed."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core.auth.tokens import clear_auth_cookies, set_auth_cookies


class RenewedAuthCookiesMiddleware:
    """Authentication runs inside the view and cannot touch the response; it leaves the renewed
    pair (or a refusal) on the request, and this writes the cookies once the response exists."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        tokens = getattr(request, "renewed_auth_tokens", None)
        if tokens is not None:
            set_auth_cookies(response, access=tokens["access"], refresh=tokens["refresh"])
        elif getattr(request, "auth_cookies_refused", False):
            clear_auth_cookies(response)
        return response
