"""Sign-in endpoints (`/api/auth/*`) and the small browser sign-in page (`/signin`)."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login as auth_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts.realtime import close_user_sockets
from core.api import fields as strict
from core.api.schema_hooks import body_rules
from core.auth.attempts import AttemptInProgress, authenticate_once
from core.auth.authentication import check_cookie_origin
from core.auth.services import TokenRefused, refresh_token_revoke, refresh_token_rotate
from core.auth.throttles import LoginRateThrottle
from core.auth.tokens import clear_auth_cookies, issue_tokens, set_auth_cookies, user_payload
from core.exceptions import error_body


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes calls this when a (username, IP) pair is locked out."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    response = JsonResponse(
        error_body(f"Too many failed sign-in attempts. Try again in {minutes} minutes.", "locked_out"), status=429
    )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


def attempt_in_progress_response() -> HttpResponse:
    """A second sign-in for the same (account, address) while one is being checked."""
    response = JsonResponse(
        error_body("Another sign-in for this account is in progress.", "attempt_in_progress"), status=429
    )
    response["Retry-After"] = "1"
    return response


def _error(status: int, message: str, code: str) -> Response:
    return Response(error_body(message, code), status=status)


@body_rules(anyOf=[{"required": ["username"]}, {"required": ["email"]}])
class LoginInputSerializer(serializers.Serializer):
    username = strict.CharField(required=False, max_length=254)
    email = strict.CharField(required=False, max_length=254)
    password = strict.CharField(max_length=4096, trim_whitespace=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("username") and not attrs.get("email"):
            raise serializers.ValidationError({"username": ["Send a username or an email."]})
        return attrs


UserSerializer = inline_serializer(
    "SignedInUser",
    fields={
        "id": serializers.IntegerField(),
        "username": serializers.CharField(),
        "email": serializers.CharField(),
        "name": serializers.CharField(),
        "role": serializers.CharField(allow_null=True),
    },
)
TokensSerializer = inline_serializer(
    "Tokens",
    fields={"access": serializers.CharField(), "refresh": serializers.CharField(), "user": UserSerializer},
)
SuccessSerializer = inline_serializer("Success", fields={"success": serializers.BooleanField()})


class RefreshInputSerializer(serializers.Serializer):
    refresh = strict.CharField(required=False, help_text="Else the refresh cookie.")


def _refresh_token(request: Request) -> str | None:
    """The refresh token from the body, else from its cookie (then the Origin must be trusted)."""
    body = RefreshInputSerializer(data=request.data)
    body.is_valid(raise_exception=True)  # a `refresh` that is not a token's text is a 400 naming it
    raw = body.validated_data.get("refresh")
    if not raw:
        raw = request.COOKIES.get(settings.AUTH_COOKIE_REFRESH)
        if raw:
            check_cookie_origin(request)
    return raw if isinstance(raw, str) and raw else None


class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        request=LoginInputSerializer,
        responses={200: TokensSerializer, 401: OpenApiResponse(description="Invalid credentials")},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        identifier = data.validated_data.get("username") or data.validated_data["email"]
        try:
            # django-axes counts failures per (username, IP) on the Django request.
            user = authenticate_once(request._request, identifier=identifier, password=data.validated_data["password"])
        except AttemptInProgress:
            return attempt_in_progress_response()
        if user is None:
            return _error(401, "Invalid username or password.", "invalid_credentials")
        tokens = issue_tokens(user)
        response = Response({**tokens, "user": user_payload(user)})
        set_auth_cookies(response, access=tokens["access"], refresh=tokens["refresh"])
        return response


class RefreshView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=RefreshInputSerializer, responses={200: TokensSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        raw = _refresh_token(request)
        if raw is None:
            return _error(401, "No refresh token.", "not_authenticated")
        try:
            tokens = refresh_token_rotate(raw=raw)
        except TokenRefused:
            # Expired, forged, already used, or its user is gone, inactive or changed password:
            # one answer for all, as before (the reason is for the logs, not for a token holder).
            return _error(401, "Refresh token is invalid or expired.", "token_not_valid")
        response = Response(tokens)
        set_auth_cookies(response, access=tokens["access"], refresh=tokens["refresh"])
        return response


class LogoutView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=RefreshInputSerializer, responses={200: SuccessSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        raw = _refresh_token(request)
        if raw is not None:
            # An already invalid token is fine: signing out still clears the cookies.
            user_id = refresh_token_revoke(raw=raw)
            if user_id is not None:
                close_user_sockets(user_id)  # the live alert feed (ws/alerts)
        response = Response({"success": True})
        clear_auth_cookies(response)
        return response


def _safe_next(request: HttpRequest, url: str) -> str | None:
    """`url` when it stays on this site or goes to a trusted origin (the React app, wherever it
    is hosted); None otherwise (an open redirect would hand a phishing page a signed-in user)."""
    if not url:
        return None
    if url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return url
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and f"{parts.scheme}://{parts.netloc}" in settings.TRUSTED_ORIGINS:
        return url if url_has_allowed_host_and_scheme(url, allowed_hosts={parts.netloc}) else None
    return None


def signin_page(request: HttpRequest) -> HttpResponse:
    """A plain form for browser users: signs in, sets the cookies, goes back to `next`.

    Without a `next`, staff land on the admin (signed in to it as well), others on the API docs."""
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next") or "")
    context: dict[str, Any] = {"next": next_url or "", "error": None, "username": ""}
    if request.method == "POST":
        typed = request.POST.get("username", "")[:254]
        context["username"] = typed
        try:
            user = authenticate_once(request, identifier=typed, password=request.POST.get("password", "")[:4096])
        except AttemptInProgress:
            return attempt_in_progress_response()
        if getattr(request, "axes_locked_out", False):
            return lockout_response(request)
        if user is not None:
            if next_url is None and user.is_staff:
                next_url = "/admin/"
                # The admin authenticates by Django's session, not by the token cookies.
                auth_login(request, user, backend="core.auth.backends.UsernameOrEmailBackend")
            tokens = issue_tokens(user)
            response = HttpResponse(status=303)
            response["Location"] = next_url or "/api/docs"
            set_auth_cookies(response, access=tokens["access"], refresh=tokens["refresh"])
            return response
        context["error"] = "Invalid username or password."
        return render(request, "churnshield/signin.html", context, status=401)
    return render(request, "churnshield/signin.html", context)


class AdminSignInForm(AdminAuthenticationForm):
    """The admin's sign-in form, checking the password the way every other door does."""

    def clean(self) -> dict[str, Any]:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is not None and password:
            self.user_cache = authenticate_once(self.request, identifier=username, password=password)
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


def admin_login(request: HttpRequest) -> HttpResponse:
    """`/admin/login/`: Django's admin sign-in with AdminSignInForm; a concurrent attempt is a 429."""
    try:
        return admin.site.login(request, extra_context=None)
    except AttemptInProgress:
        return attempt_in_progress_response()


class ApiDocsView(SpectacularSwaggerView):
    """Swagger UI for signed-in users; a browser without a sign-in goes to the sign-in page."""

    template_name = "churnshield/api_docs.html"

    def handle_exception(self, exc: Exception) -> HttpResponse:
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            return HttpResponseRedirect(f"/signin?next={self.request.path}")
        return super().handle_exception(exc)
