"""Issuing and clearing the sign-in tokens (body and HttpOnly cookies)."""

from typing import Any

from django.conf import settings
from django.http import HttpResponse

from core.auth.roles import role_of
from core.auth.services import FamilyRefreshToken

# The whole site, not only /api/auth: an API request whose access cookie has expired renews it
# from the refresh cookie (the sliding session), so every API route must receive it.
REFRESH_COOKIE_PATH = "/"


def user_payload(user: Any) -> dict:
    return {
        "id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "name": user.get_full_name() or user.get_username(),
        "role": role_of(user),
    }


def issue_tokens(user: Any) -> dict[str, str]:
    refresh = FamilyRefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def cookie_secure() -> bool:
    """Browsers drop a `SameSite=None` cookie that is not `Secure`, so that mode implies it."""
    return settings.AUTH_COOKIE_SECURE or settings.AUTH_COOKIE_SAMESITE == "None"


def set_auth_cookies(response: HttpResponse, *, access: str, refresh: str | None) -> None:
    jwt = settings.SIMPLE_JWT
    common = {"httponly": True, "secure": cookie_secure(), "samesite": settings.AUTH_COOKIE_SAMESITE}
    response.set_cookie(
        settings.AUTH_COOKIE_ACCESS,
        access,
        max_age=int(jwt["ACCESS_TOKEN_LIFETIME"].total_seconds()),
        path="/",
        **common,
    )
    if refresh:
        response.set_cookie(
            settings.AUTH_COOKIE_REFRESH,
            refresh,
            max_age=int(jwt["REFRESH_TOKEN_LIFETIME"].total_seconds()),
            path=REFRESH_COOKIE_PATH,
            **common,
        )


def clear_auth_cookies(response: HttpResponse) -> None:
    response.delete_cookie(settings.AUTH_COOKIE_ACCESS, path="/", samesite=settings.AUTH_COOKIE_SAMESITE)
    response.delete_cookie(
        settings.AUTH_COOKIE_REFRESH, path=REFRESH_COOKIE_PATH, samesite=settings.AUTH_COOKIE_SAMESITE
    )
