"""Playbook definitions: typed steps, conditions and durations, validated before anything is stored.

A definition is a JSON list of steps. Each step has a `type`, an optional `key` (default `s<index>`)
and the fields of its type. Control flows forward only: a `condition` jumps to a later step (or
`end`), and every other step may name `next`. Forward-only flow means a step runs at most once per
execution, which is what makes `(execution, step key)` a valid exactly-once key.

Each step type's fields are a DRF serializer (a schema); the public validators raise the domain's
`InvalidInputError` keyed `steps → <index> → <field>`, so the API, the admin form and the import
command all name the step and the field, and the services that call them import no DRF.
"""

import re
from typing import Any

from django.conf import settings
from django.template import Context, Engine, TemplateSyntaxError
from rest_framework import serializers

from alerts.notifications.errors import UnsafeWebhookURL
from alerts.notifications.webhooks import check_url_shape
from core.exceptions import InvalidInputError

STEP_TYPES = (
    "create_intervention",
    "send_email",
    "notify",
    "create_alert",
    "wait",
    "condition",
    "update_customer",
    "webhook",
)
EXTERNAL_STEPS = ("send_email", "webhook")  # effects outside our database: idempotency key, retries
CONDITION_FIELDS = (
    "risk",
    "risk_level",
    "health",
    "plan",
    "mrr",
    "nps",
    "support_tickets",
    "days_since_login",
    "is_active",
    "intervention_outcome",
)
OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in")
UPDATABLE_CUSTOMER_FIELDS = ("plan", "company", "owner")  # owner: a username (hand-over to a senior CSM)
ASSIGNEE_RULES = ("owner", "least_loaded", "named")
NOTIFY_CHANNELS = ("in_app", "slack", "teams")
SEVERITIES = ("critical", "high", "medium", "low")
PRIORITIES = ("low", "medium", "high")
MAX_STEPS = 50
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TEMPLATES = Engine(autoescape=False)  # e-mail text with customer fields; no loaders, no tags beyond built-ins


def duration_seconds(value: Any) -> int:
    """`90`, `"90s"`, `"15m"`, `"2h"`, `"3d"` → seconds. Raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError("use seconds or a string like 30s, 15m, 2h, 3d")
    if not 0 <= seconds <= 365 * 86400:
        raise ValueError("must be between 0 seconds and 365 days")
    return seconds


class DurationField(serializers.Field):
    def to_internal_value(self, data: Any) -> Any:
        try:
            duration_seconds(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class TemplateField(serializers.CharField):
    """Text rendered with `{{ customer.name }}`-style fields; must compile."""

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            TEMPLATES.from_string(text)
        except TemplateSyntaxError as exc:
            raise serializers.ValidationError(f"template error: {exc}") from None
        return text


def render_template(text: str, context: dict) -> str:
    return TEMPLATES.from_string(text).render(Context(context, autoescape=False))


def validate_condition(value: Any, depth: int = 0) -> dict:
    """A condition: `{field, op, value}` or `{all: [...]}` / `{any: [...]}` (nested at most 4 deep)."""
    if not isinstance(value, dict):
        raise serializers.ValidationError("must be an object")
    if depth > 4:
        raise serializers.ValidationError("conditions nest at most 4 levels")
    for group in ("all", "any"):
        if group in value:
            items = value[group]
            if not isinstance(items, list) or not items:
                raise serializers.ValidationError({group: ["must be a non-empty list of conditions"]})
            errors = {}
            for index, item in enumerate(items):
                try:
                    validate_condition(item, depth + 1)
                except serializers.ValidationError as exc:
                    errors[index] = exc.detail
            if errors:
                raise serializers.ValidationError({group: errors})
            return value
    errors: dict[str, list[str]] = {}
    if value.get("field") not in CONDITION_FIELDS:
        errors["field"] = [f"must be one of {', '.join(CONDITION_FIELDS)}"]
    if value.get("op", "eq") not in OPERATORS:
        errors["op"] = [f"must be one of {', '.join(OPERATORS)}"]
    if "value" not in value:
        errors["value"] = ["this field is required"]
    elif value.get("op") in ("in", "not_in") and not isinstance(value["value"], list):
        errors["value"] = ["must be a list for in/not_in"]
    if errors:
        raise serializers.ValidationError(errors)
    return value


class ConditionField(serializers.Field):
    def to_internal_value(self, data: Any) -> Any:
        return validate_condition(data)

    def to_representation(self, value: Any) -> Any:
        return value


class _Step(serializers.Serializer):
    key = serializers.RegexField(_KEY, required=False, error_messages={"invalid": "use 1-40 letters, digits, _ or -"})
    type = serializers.ChoiceField(choices=STEP_TYPES)
    next = serializers.CharField(required=False, max_length=40)
    name = serializers.CharField(required=False, max_length=200)


class CreateInterventionStep(_Step):
    intervention_type = serializers.CharField(max_length=200)
    priority = serializers.ChoiceField(choices=PRIORITIES, default="medium")
    assignee = serializers.ChoiceField(choices=ASSIGNEE_RULES, default="owner")
    assignee_name = serializers.CharField(max_length=200, required=False)
    description = TemplateField(max_length=5000, required=False, allow_blank=True)
    due_in_days = serializers.IntegerField(min_value=0, max_value=365, required=False)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("assignee") == "named" and not attrs.get("assignee_name"):
            raise serializers.ValidationError({"assignee_name": ["required when assignee is named"]})
        return attrs


class SendEmailStep(_Step):
    to = serializers.CharField(max_length=254, help_text="customer, owner, or an e-mail address")
    subject = TemplateField(max_length=500)
    body = TemplateField(max_length=20_000)

    def validate_to(self, value: str) -> str:
        if value not in ("customer", "owner"):
            serializers.EmailField().run_validation(value)
        return value


class NotifyStep(_Step):
    channel = serializers.ChoiceField(choices=NOTIFY_CHANNELS, default="in_app")
    message = TemplateField(max_length=2000)
    severity = serializers.ChoiceField(choices=SEVERITIES, default="medium")


class CreateAlertStep(_Step):
    title = TemplateField(max_length=300)
    message = TemplateField(max_length=2000)
    severity = serializers.ChoiceField(choices=SEVERITIES, default="high")


class WaitStep(_Step):
    duration = DurationField(required=False)
    until = ConditionField(required=False)
    timeout = DurationField(required=False)
    check_every = DurationField(required=False)

    def validate(self, attrs: dict) -> dict:
        if ("duration" in attrs) == ("until" in attrs):
            raise serializers.ValidationError({"duration": ["give either duration or until (with timeout)"]})
        if "until" in attrs and "timeout" not in attrs:
            raise serializers.ValidationError({"timeout": ["required with until"]})
        return attrs


class ConditionStep(_Step):
    """`{type: condition, if: <condition>, then: <key|end>, else: <key|end>}` (a missing branch falls through)."""

    def to_internal_value(self, data: Any) -> Any:
        attrs = super().to_internal_value(data)
        errors: dict[str, Any] = {}
        if "if" not in data:
            errors["if"] = ["this field is required"]
        else:
            try:
                attrs["if"] = validate_condition(data["if"])
            except serializers.ValidationError as exc:
                errors["if"] = exc.detail
        for branch in ("then", "else"):
            if branch in data:
                if not isinstance(data[branch], str) or not data[branch]:
                    errors[branch] = ["must be a step key or end"]
                else:
                    attrs[branch] = data[branch]
        if "then" not in data and "else" not in data:
            errors["then"] = ["give then and/or else (a step key or end)"]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class UpdateCustomerStep(_Step):
    fields = serializers.DictField()

    def validate_fields(self, value: dict) -> dict:
        bad = sorted(set(value) - set(UPDATABLE_CUSTOMER_FIELDS))
        if bad:
            raise serializers.ValidationError(
                f"not allowed: {', '.join(bad)} (allowed: {', '.join(UPDATABLE_CUSTOMER_FIELDS)})"
            )
        if not value:
            raise serializers.ValidationError("name at least one field")
        for name, item in value.items():
            if not isinstance(item, str) or len(item) > 200:
                raise serializers.ValidationError(f"{name}: must be a string of at most 200 characters")
        return value


class WebhookStep(_Step):
    url = serializers.URLField(max_length=2000)
    payload = serializers.DictField(required=False)
    timeout = serializers.FloatField(min_value=0.1, max_value=30, default=10)

    def validate_url(self, value: str) -> str:
        # What is refused without resolving the name; the send re-checks every resolved address.
        try:
            check_url_shape(value, allow_loopback=settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK)
        except UnsafeWebhookURL as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value


STEP_SERIALIZERS: dict[str, type[_Step]] = {
    "create_intervention": CreateInterventionStep,
    "send_email": SendEmailStep,
    "notify": NotifyStep,
    "create_alert": CreateAlertStep,
    "wait": WaitStep,
    "condition": ConditionStep,
    "update_customer": UpdateCustomerStep,
    "webhook": WebhookStep,
}


def validate_steps(steps: Any) -> list[dict]:
    """The normalised steps (each with its `key`), or InvalidInputError naming `steps.<index>.<field>`."""
    try:
        return _validate_steps(steps)
    except serializers.ValidationError as exc:
        raise InvalidInputError(exc.detail) from None


def _validate_steps(steps: Any) -> list[dict]:
    if not isinstance(steps, list) or not steps:
        raise serializers.ValidationError({"steps": ["must be a non-empty list of steps"]})
    if len(steps) > MAX_STEPS:
        raise serializers.ValidationError({"steps": [f"at most {MAX_STEPS} steps"]})
    errors: dict[int, Any] = {}
    normalised: list[dict] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            errors[index] = {"type": ["each step must be an object with a type"]}
            continue
        kind = step.get("type")
        if kind not in STEP_SERIALIZERS:
            errors[index] = {"type": [f"must be one of {', '.join(STEP_TYPES)}"]}
            continue
        serializer = STEP_SERIALIZERS[kind](data=step)
        if not serializer.is_valid():
            errors[index] = serializer.errors
            continue
        item = dict(serializer.validated_data)
        item.setdefault("key", f"s{index}")
        normalised.append(item)
    if errors:
        raise serializers.ValidationError({"steps": errors})
    positions: dict[str, int] = {}
    for index, step in enumerate(normalised):
        if step["key"] in positions:
            errors[index] = {"key": [f"duplicate step key {step['key']!r}"]}
        positions[step["key"]] = index
    for index, step in enumerate(normalised):
        for field in ("next", "then", "else"):
            target = step.get(field)
            if target is None or target == "end":
                continue
            if target not in positions:
                errors.setdefault(index, {})[field] = [f"unknown step key {target!r}"]
            elif positions[target] <= index:
                errors.setdefault(index, {})[field] = ["must point to a later step (flow is forward only)"]
    if errors:
        raise serializers.ValidationError({"steps": errors})
    return normalised


def validate_exit_conditions(value: Any) -> list[dict]:
    """The exit conditions, or InvalidInputError naming `exitConditions.<index>`."""
    try:
        return _validate_exit_conditions(value)
    except serializers.ValidationError as exc:
        raise InvalidInputError(exc.detail) from None


def _validate_exit_conditions(value: Any) -> list[dict]:
    if not isinstance(value, list):
        raise serializers.ValidationError({"exitConditions": ["must be a list of conditions"]})
    errors = {}
    for index, item in enumerate(value):
        try:
            validate_condition(item)
        except serializers.ValidationError as exc:
            errors[index] = exc.detail
    if errors:
        raise serializers.ValidationError({"exitConditions": errors})
    return value


def next_key(steps: list[dict], key: str, explicit: str | None = None) -> str:
    """The key of the step after `key` ("" at the end)."""
    if explicit is not None:
        return "" if explicit == "end" else explicit
    keys = [step["key"] for step in steps]
    position = keys.index(key) + 1
    return keys[position] if position < len(keys) else ""
