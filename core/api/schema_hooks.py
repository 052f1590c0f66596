"""OpenAPI post-processing: the error responses every operation can give, and the whole-body
rules of request serializers (`body_rules`).

Every API operation answers errors in one shape (`{message, code, errors}`, rendered by
`core.api.errors`): 400 for bad input, 401 without valid credentials, 403 for a role
that may not do it, 404 for what is outside the caller's portfolio. Views document their
success bodies; this hook adds those four to any operation that does not document them itself,
so clients (and schemathesis' status-code conformance check) see every status the API sends.
The operations whose service raises ConflictError also document their 409.
"""

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": True},
    },
    "required": ["message", "code", "errors"],
}
ERRORS = {
    "400": "Invalid input; `errors` names the fields.",
    "401": "Missing, invalid or expired credentials.",
    "403": "The caller's role may not do this.",
    "404": "Not found, or outside the caller's portfolio.",
}
PUBLIC = {("/api/auth/login", "post"), ("/api/auth/refresh", "post"), ("/api/auth/logout", "post")}
THROTTLED = {("/api/auth/login", "post")}  # the login throttle (LOGIN_THROTTLE_RATE) and axes lockout
NEEDS_REDIS = {("/api/alerts/ws-ticket", "post")}  # 503 while Redis is unreachable
# The operations whose service raises ConflictError (rendered 409 by core.api.errors).
CONFLICTS = {
    ("/api/playbook-executions/{id}/cancel", "post"): "The execution is not running.",
    ("/api/playbook-executions/{id}/retry", "post"): (
        "The execution is not failed or cancelled, is a holdout, or the playbook is running again."
    ),
    ("/api/v1/playbooks/trigger", "post"): "The playbook is already running for the customer, or inactive.",
    ("/api/integrations/{id}/sync", "post"): "A sync is already running, or the provider has no pull sync.",
    ("/api/alerts/{id}/acknowledge", "post"): "The alert is resolved.",
    ("/api/alerts/{id}/snooze", "post"): "The alert is resolved.",
    ("/api/v1/churn/predict", "post"): "The customer has churned and was never scored.",
    ("/api/playbook-email-reviews/{id}/approve", "post"): (
        "The e-mail was discarded (or approved and is edited again), or its execution no longer runs."
    ),
    ("/api/playbook-email-reviews/{id}/discard", "post"): "The e-mail was already approved.",
}


# Whole-body rules of a request serializer's `validate()` (JSON Schema keywords such as `anyOf`),
# keyed by the request component's name; `body_rules` fills it, `add_body_rules` writes them.
BODY_RULES: dict[str, dict[str, Any]] = {}


def body_rules(**keywords: Any) -> Callable[[T], T]:
    """Document in the OpenAPI schema a rule the serializer's `validate()` enforces across fields,
    e.g. `anyOf=[{"required": ["username"]}, {"required": ["email"]}]`."""

    def register(serializer_class: T) -> T:
        BODY_RULES[serializer_class.__name__.removesuffix("Serializer") + "Request"] = keywords
        return serializer_class

    return register


def add_body_rules(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.get("components", {}).get("schemas", {})
    for name, keywords in BODY_RULES.items():
        if name in schemas:
            schemas[name].update(keywords)
    # A body that must name some field cannot be left out, though each field alone is optional.
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body and any(
                media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] in BODY_RULES
                for media in body.get("content", {}).values()
            ):
                body["required"] = True
    return result


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault("Error", ERROR_SCHEMA)
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in ERRORS.items():
                if status == "403" and (path, method) in PUBLIC:
                    continue
                operation["responses"].setdefault(status, {"description": description, "content": reference})
            if (path, method) in CONFLICTS:
                operation["responses"].setdefault("409", {"description": CONFLICTS[path, method], "content": reference})
            if (path, method) in THROTTLED:
                operation["responses"].setdefault(
                    "429",
                    {"description": "Too many attempts; retry after `Retry-After` seconds.", "content": reference},
                )
            if (path, method) in NEEDS_REDIS:
                operation["responses"].setdefault(
                    "503", {"description": "Redis is unreachable; try again shortly.", "content": reference}
                )
    return result
