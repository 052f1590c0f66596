"""The one exception handler: every API error has the contract's JSON shape.

    {"message": "<for a person>", "code": "<for a program>", "errors": {"<field>": ["..."]}}

`errors` names each invalid field (camelCase, as the client sent it); it is `{}` otherwise.
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.exceptions import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
    error_body,
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A service this request needs is unavailable. Try again shortly."
    default_code = "service_unavailable"


def _first_message(errors: Any, path: str = "") -> str:
    """The first leaf message, prefixed with the path of the field it belongs to."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            sub = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            if value:
                return _first_message(value, sub)
        return ""
    if isinstance(errors, list):
        for index, value in enumerate(errors):
            if isinstance(value, (dict, list)):
                if value:
                    return _first_message(value, f"{path}[{index}]")
                continue
            return f"{path}: {value}" if path else str(value)
        return ""
    return f"{path}: {errors}" if path else str(errors)


def _string_keys(errors: Any) -> Any:
    """DRF keys list-item errors by int index; JSON object keys are strings."""
    if isinstance(errors, dict):
        return {str(key): _string_keys(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [_string_keys(value) for value in errors]
    return errors


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, InvalidInputError):
        exc = exceptions.ValidationError(exc.errors)
    elif isinstance(exc, NotFoundError):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, ConflictError):
        exc = Conflict(str(exc) or Conflict.default_detail)
    elif isinstance(exc, ServiceUnavailableError):
        exc = ServiceUnavailable(str(exc) or ServiceUnavailable.default_detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if str(exc) else "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if not isinstance(exc, exceptions.APIException):
        return None

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        detail = _string_keys(exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail})
        body = error_body(_first_message(detail) or "Invalid request data", "invalid", detail)
    else:
        detail = exc.detail
        if isinstance(detail, dict):  # simplejwt's InvalidToken carries a dict
            message = str(detail.get("detail", exc.default_detail))
            code = detail.get("code") or exc.default_code
        else:
            message = str(detail)
            code = getattr(detail, "code", None) or exc.default_code
        body = error_body(message, str(code))

    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 handler: an URL under /api/ that no route matches (e.g. `/api/alerts/-1/read`)
    answers in the API's JSON error shape; other paths keep Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("Not found.", "not_found"), status=404)
    return page_not_found(request, exception)
