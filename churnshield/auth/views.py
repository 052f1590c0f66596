"""Sign-in endpoints (`/api/auth/*`) and the small browser sign-in page (`/signin`)."""

import contextlib
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from alerts.realtime import close_user_sockets
from churnshield.auth.attempts import canonical_username, single_attempt
from churnshield.auth.authentication import check_cookie_origin
from churnshield.auth.tokens import clear_auth_cookies, issue_tokens, set_auth_cookies, user_payload


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes calls this when a (username, IP) pair is locked out."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    response = JsonResponse(
        {
            "message": f"Too many failed sign-in attempts. Try again in {minutes} minutes.",
            "code": "locked_out",
            "errors": {},
        },
        status=429,
    )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


def attempt_in_progress_response() -> HttpResponse:
    """A second sign-in for the same (account, address) while one is being checked."""
    response = JsonResponse(
        {"message": "Another sign-in for this account is in progress.", "code": "attempt_in_progress", "errors": {}},
        status=429,
    )
    response["Retry-After"] = "1"
    return response


def _error(status: int, message: str, code: str) -> Response:
    return Response({"message": message, "code": code, "errors": {}}, status=status)


class LoginInputSerializer(serializers.Serializer):
    username = serializers.CharField(required=False, max_length=254)
    email = serializers.CharField(required=False, max_length=254)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)

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
RefreshInputSerializer = inline_serializer("RefreshInput", fields={"refresh": serializers.CharField(required=False)})


def _refresh_token(request: Request) -> str | None:
    """The refresh token from the body, else from its cookie (then the Origin must be trusted)."""
    raw = request.data.get("refresh") if isinstance(request.data, dict) else None
    if not raw:
        raw = request.COOKIES.get(settings.AUTH_COOKIE_REFRESH)
        if raw:
            check_cookie_origin(request)
    return raw if isinstance(raw, str) and raw else None


class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        request=LoginInputSerializer,
        responses={200: TokensSerializer, 401: OpenApiResponse(description="Invalid credentials")},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = canonical_username(data.validated_data.get("username") or data.validated_data["email"])
        # django-axes counts failures per (username, IP) on the Django request; one attempt at a time.
        with single_attempt(request._request, username) as alone:
            if not alone:
                return attempt_in_progress_response()
            user = authenticate(request._request, username=username, password=data.validated_data["password"])
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
        serializer = TokenRefreshSerializer(data={"refresh": raw})
        try:
            serializer.is_valid(raise_exception=True)
        except (TokenError, exceptions.AuthenticationFailed):
            # Expired, forged, blacklisted (e.g. reused after rotation) or for an inactive user.
            return _error(401, "Refresh token is invalid or expired.", "token_not_valid")
        access = serializer.validated_data["access"]
        refresh = serializer.validated_data.get("refresh", raw)
        response = Response({"access": access, "refresh": refresh})
        set_auth_cookies(response, access=access, refresh=refresh)
        return response


class LogoutView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=RefreshInputSerializer, responses={200: SuccessSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        raw = _refresh_token(request)
        if raw is not None:
            # An already invalid token is fine: signing out still clears the cookies.
            with contextlib.suppress(TokenError):
                token = RefreshToken(raw)
                token.blacklist()
                close_user_sockets(token[jwt_settings.USER_ID_CLAIM])  # the live alert feed (ws/alerts)
        response = Response({"success": True})
        clear_auth_cookies(response)
        return response


def signin_page(request: HttpRequest) -> HttpResponse:
    """A plain form for browser users: signs in, sets the cookies, goes back to `next`."""
    next_url = request.POST.get("next") or request.GET.get("next") or "/api/docs"
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/api/docs"
    context: dict[str, Any] = {"next": next_url, "error": None, "username": ""}
    if request.method == "POST":
        typed = request.POST.get("username", "")[:254]
        context["username"] = typed
        username = canonical_username(typed)
        with single_attempt(request, username) as alone:
            if not alone:
                return attempt_in_progress_response()
            user = authenticate(request, username=username, password=request.POST.get("password", "")[:4096])
        if getattr(request, "axes_locked_out", False):
            return lockout_response(request)
        if user is not None:
            tokens = issue_tokens(user)
            response = HttpResponse(status=303)
            response["Location"] = next_url
            set_auth_cookies(response, access=tokens["access"], refresh=tokens["refresh"])
            return response
        context["error"] = "Invalid username or password."
        return render(request, "churnshield/signin.html", context, status=401)
    return render(request, "churnshield/signin.html", context)


class ApiDocsView(SpectacularSwaggerView):
    """Swagger UI for signed-in users; a browser without a sign-in goes to the sign-in page."""

    template_name = "churnshield/api_docs.html"

    def handle_exception(self, exc: Exception) -> HttpResponse:
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            return HttpResponseRedirect(f"/signin?next={self.request.path}")
        return super().handle_exception(exc)
