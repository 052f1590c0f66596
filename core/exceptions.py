"""Domain exceptions raised by services and selectors, independent of the web layer.

The API's exception handler renders them (`core/api/errors.py`); the admin and tasks
catch them like any other exception.
"""

from typing import Any


def error_body(message: str, code: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """The API's error shape, `{"message", "code", "errors": {field: [messages]}}`: every error
    answer, from DRF's handler or outside DRF (ASGI receivers, middleware, the admin's JSON), is
    built here."""
    return {"message": message, "code": code, "errors": errors or {}}


class InvalidInputError(ValueError):
    """Input a service refuses, by field: `errors` is `{field: [messages]}`, nested for lists and
    objects (`{"steps": {index: {field: [messages]}}}`) (HTTP 400; the admin shows each message on
    its field)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(_first_leaf(errors) or "Invalid input")
        self.errors = errors


def _first_leaf(errors: Any) -> str:
    """The first message of `{field: [messages]}`, or of nested errors (`{"steps": {0: {...}}}`)."""
    if isinstance(errors, dict):
        errors = list(errors.values())
    if isinstance(errors, list):
        for value in errors:
            if found := _first_leaf(value):
                return found
        return ""
    return str(errors)


class NotFoundError(LookupError):
    """The object does not exist, or is outside what the user may see (never tell which)."""


class ConflictError(Exception):
    """The request conflicts with the current state (HTTP 409)."""


class ServiceUnavailableError(Exception):
    """A service the request needs (e.g. Redis) cannot be reached right now (HTTP 503)."""
