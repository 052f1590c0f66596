"""JWT from `Authorization: Bearer` or from the HttpOnly access cookie (contract: Authentication).

A cookie is sent by the browser automatically, so an unsafe request authenticated by the cookie
must come from a trusted origin (CSRF defence without a token; the React app sends none).

The React app never calls refresh: when the access cookie has expired (the browser drops it at
its max-age) or is invalid and a refresh cookie is present, the request renews the pair through
the same rotation as `/api/auth/refresh` and `RenewedAuthCookiesMiddleware` sets the new cookies
on its response (a sliding session).
"""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from core.auth.roles import user_with_role
from core.auth.services import TokenRefused, refresh_token_rotate


def request_origin(request: Any) -> str | None:
    """`scheme://host[:port]` from Origin, or from Referer when the browser sent no Origin."""
    origin = request.META.get("HTTP_ORIGIN")
    if origin and origin != "null":
        return origin.rstrip("/")
    referer = request.META.get("HTTP_REFERER")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return None


def is_trusted_origin(request: Any) -> bool:
    origin = request_origin(request)
    if origin is None:
        return False
    own = f"{request.scheme}://{request.get_host()}"
    return origin == own or origin in settings.TRUSTED_ORIGINS


def check_cookie_origin(request: Any) -> None:
    if request.method not in SAFE_METHODS and not is_trusted_origin(request):
        raise exceptions.PermissionDenied(_("Cookie-authenticated requests must come from a trusted origin."))


class JWTBearerOrCookieAuthentication(JWTAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        header = self.get_header(request)
        if header is not None:
            raw_token = self.get_raw_token(header)
            if raw_token is not None:
                validated = self.get_validated_token(raw_token)
                return self.get_user(validated), validated
        raw_cookie = request.COOKIES.get(settings.AUTH_COOKIE_ACCESS)
        has_refresh = bool(request.COOKIES.get(settings.AUTH_COOKIE_REFRESH))
        if not raw_cookie:
            return self.renew(request) if has_refresh else None
        try:
            validated = self.get_validated_token(raw_cookie.encode())
        except InvalidToken:
            if not has_refresh:
                raise
            return self.renew(request)
        check_cookie_origin(request)
        return self.get_user(validated), validated

    def renew(self, request: Request) -> tuple[Any, Token]:
        """A new token pair from the refresh cookie, for this request and (by the middleware) its
        response. A refused refresh token is a 401 whose response clears both cookies."""
        check_cookie_origin(request)
        try:
            tokens = refresh_token_rotate(
                raw=request.COOKIES[settings.AUTH_COOKIE_REFRESH], reuse_grace=settings.AUTH_REFRESH_REUSE_GRACE
            )
        except TokenRefused as exc:
            request._request.auth_cookies_refused = True
            raise AuthenticationFailed(_("Your session has expired. Sign in again."), code="token_not_valid") from exc
        request._request.renewed_auth_tokens = tokens
        validated = self.get_validated_token(tokens["access"].encode())
        return self.get_user(validated), validated

    def get_user(self, validated_token: Token) -> Any:
        """As simplejwt's, but loads the user's role in the same query."""
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken(_("Token contained no recognizable user identification")) from exc
        user = user_with_role(user_id)
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        return user
