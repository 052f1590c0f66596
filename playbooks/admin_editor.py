"""The playbook editor of the admin: one form per step showing only its type's fields, reordering,
adding and removing steps, errors on the step and field they belong to, and a dry run of the
unsaved steps for one customer of the user's portfolio.

The forms build the list of step dicts and hand it to `definitions.validate_steps`, the one
validation the API and the import also use; what it normalises is what is stored. Its errors,
keyed `steps → index → field`, are put back on the step form and field they name.
"""

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from core.exceptions import InvalidInputError
from customers.models import Customer
from customers.selectors import customer_scope
from playbooks import selectors
from playbooks.definitions import (
    ASSIGNEE_RULES,
    CONDITION_FIELDS,
    NOTIFY_CHANNELS,
    OPERATORS,
    PRIORITIES,
    SEVERITIES,
    STEP_TYPES,
    UPDATABLE_CUSTOMER_FIELDS,
    validate_exit_conditions,
    validate_steps,
)
from playbooks.models import Playbook, PlaybookExecution

TYPE_LABELS = {
    "create_intervention": "Create an intervention",
    "send_email": "Send an e-mail",
    "notify": "Notify the team",
    "create_alert": "Raise an alert",
    "wait": "Wait",
    "condition": "Branch on a condition",
    "update_customer": "Update the customer",
    "webhook": "Call a webhook",
}
OPERATOR_LABELS = {
    "eq": "is",
    "ne": "is not",
    "lt": "is less than",
    "lte": "is at most",
    "gt": "is more than",
    "gte": "is at least",
    "in": "is one of",
    "not_in": "is none of",
}
NUMBER_FIELDS = ("risk", "health", "mrr", "nps", "support_tickets", "days_since_login")

# Each type's form fields, in the order shown. A form field named differently from the definition's
# key (two types share a key with different defaults, or a condition is three fields) is mapped in
# `_FIELD_OF` below and in `StepForm.step`.
STEP_FIELDS: dict[str, tuple[str, ...]] = {
    "create_intervention": (
        "intervention_type",
        "priority",
        "assignee",
        "assignee_name",
        "description",
        "due_in_days",
        "next",
    ),
    "send_email": ("to", "subject", "body", "next"),
    "notify": ("channel", "notify_severity", "message", "next"),
    "create_alert": ("title", "alert_severity", "message", "next"),
    "wait": ("duration", "until_field", "until_op", "until_value", "timeout", "check_every", "next"),
    "condition": ("if_field", "if_op", "if_value", "then", "else"),
    "update_customer": ("set_plan", "set_company", "set_owner", "next"),
    "webhook": ("url", "payload", "webhook_timeout", "next"),
}
# A definition error on (type, key) shows on this form field.
_FIELD_OF = {
    ("notify", "severity"): "notify_severity",
    ("create_alert", "severity"): "alert_severity",
    ("webhook", "timeout"): "webhook_timeout",
    ("update_customer", "fields"): "set_plan",
}
_CONDITION_PARTS = {"field": "field", "op": "op", "value": "value"}


def _choices(values: tuple[str, ...], labels: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [(value, (labels or {}).get(value, value.replace("_", " "))) for value in values]


def _condition_value_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_condition_value_text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _typed(field: str, text: str) -> Any:
    """A condition value as the engine compares it: numbers for numeric fields, true/false for
    `is_active`, text otherwise. Raises ValueError for a number field given words."""
    text = text.strip()
    if field in NUMBER_FIELDS:
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    if field == "is_active":
        if text.lower() not in ("true", "false", "yes", "no"):
            raise ValueError("use true or false")
        return text.lower() in ("true", "yes")
    return text


def condition_text(condition: dict) -> str:
    """A condition in words: "support tickets is more than 0"."""
    for group, joiner in (("all", " and "), ("any", " or ")):
        if group in condition:
            return "(" + joiner.join(condition_text(item) for item in condition[group]) + ")"
    op = OPERATOR_LABELS.get(condition.get("op", "eq"), condition.get("op", ""))
    return f"{condition.get('field', '').replace('_', ' ')} {op} {_condition_value_text(condition.get('value'))}"


def condition_from_fields(form: forms.Form, prefix: str) -> dict | None:
    """The condition in `<prefix>_field/_op/_value` (or a combined one kept in `<prefix>_group`);
    None when the row is blank, or with an error on the value field when it is not of its type."""
    field = form.cleaned_data.get(f"{prefix}_field")
    if not field:
        group = form.cleaned_data.get(f"{prefix}_group")
        try:
            return json.loads(group) if group else None
        except ValueError:
            return None
    op = form.cleaned_data.get(f"{prefix}_op") or "eq"
    text = form.cleaned_data.get(f"{prefix}_value") or ""
    try:
        if op in ("in", "not_in"):
            value: Any = [_typed(field, item) for item in text.split(",") if item.strip()]
        else:
            value = _typed(field, text)
    except ValueError:
        form.add_error(f"{prefix}_value", "use true or false" if field == "is_active" else "must be a number")
        return None
    return {"field": field, "op": op, "value": value}


def condition_initial(condition: Any, prefix: str) -> dict:
    """A stored condition → the initial values of its three fields (a combined one kept whole)."""
    if not isinstance(condition, dict):
        return {}
    if "field" not in condition:
        return {f"{prefix}_group": json.dumps(condition)}
    return {
        f"{prefix}_field": condition["field"],
        f"{prefix}_op": condition.get("op", "eq"),
        f"{prefix}_value": _condition_value_text(condition.get("value")),
    }


def _target(key: str | None) -> str:
    return "end the playbook" if key == "end" else f"go to step {key}" if key else "continue"


def read_only_line(step: dict, outline: str) -> str:
    """What a step does, for those who read the playbook without editing it."""
    if step["type"] == "condition":
        return f"If {condition_text(step['if'])}: {_target(step.get('then'))}; otherwise {_target(step.get('else'))}."
    if step["type"] == "wait" and "until" in step:
        return f"Wait until {condition_text(step['until'])} (give up after {step['timeout']})"
    if step["type"] in ("notify", "create_alert"):
        return f"{outline}: {step.get('title') or step.get('message', '')}"
    return outline


def _payload_text(payload: dict) -> str:
    return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in payload.items())


def _payload(text: str) -> dict:
    """`name: value` lines → a dict; a value that reads as a JSON number or true/false keeps its type."""
    payload: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"line {number}: write name: value")
        value = value.strip()
        try:
            parsed = json.loads(value)
            payload[name.strip()] = parsed if isinstance(parsed, int | float | bool) else value
        except ValueError:
            payload[name.strip()] = value
    return payload


def _duration(text: str) -> str | int:
    text = text.strip()
    return int(text) if text.isdigit() else text


class StepForm(forms.Form):
    """One step: its type, key, label and the fields of every type; only the chosen type's are read."""

    type = forms.ChoiceField(choices=_choices(STEP_TYPES, TYPE_LABELS), label="Step")
    key = forms.RegexField(
        r"^[A-Za-z0-9_-]{1,40}$",
        required=False,
        label="Key",
        help_text="How branches name this step",
        error_messages={"invalid": "use 1-40 letters, digits, _ or -"},
        widget=forms.TextInput(attrs={"size": 10, "class": "step-key"}),
    )
    name = forms.CharField(required=False, max_length=200, label="Label")
    # create_intervention
    intervention_type = forms.CharField(required=False, max_length=200, label="Intervention type")
    priority = forms.ChoiceField(choices=_choices(PRIORITIES), initial="medium", required=False)
    assignee = forms.ChoiceField(
        choices=_choices(
            ASSIGNEE_RULES,
            {"owner": "The account owner", "least_loaded": "The least-loaded CSM", "named": "A named person"},
        ),
        initial="owner",
        required=False,
        label="Assign to",
    )
    assignee_name = forms.CharField(required=False, max_length=200, label="Named person")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Description")
    due_in_days = forms.IntegerField(required=False, min_value=0, max_value=365, label="Due in days")
    # send_email
    to = forms.CharField(required=False, max_length=254, label="To", help_text="customer, owner, or an e-mail address")
    subject = forms.CharField(required=False, max_length=500, widget=forms.TextInput(attrs={"size": 70}))
    body = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Customer fields like {{ customer.name }} are filled in",
    )
    # notify and create_alert
    channel = forms.ChoiceField(choices=_choices(NOTIFY_CHANNELS), initial="in_app", required=False)
    notify_severity = forms.ChoiceField(
        choices=_choices(SEVERITIES), initial="medium", required=False, label="Severity"
    )
    alert_severity = forms.ChoiceField(choices=_choices(SEVERITIES), initial="high", required=False, label="Severity")
    title = forms.CharField(required=False, max_length=300, widget=forms.TextInput(attrs={"size": 70}))
    message = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    # wait
    duration = forms.CharField(required=False, label="Wait for", help_text="e.g. 30m, 2h, 3d; or wait until")
    until_field = forms.ChoiceField(
        choices=[("", "—"), *_choices(CONDITION_FIELDS)], required=False, label="Until this field"
    )
    until_op = forms.ChoiceField(choices=_choices(OPERATORS, OPERATOR_LABELS), required=False, label="Operator")
    until_value = forms.CharField(required=False, label="Value", help_text="Lists: separate with commas")
    timeout = forms.CharField(required=False, label="Give up after", help_text="Required with until, e.g. 7d")
    check_every = forms.CharField(required=False, label="Check every")
    # condition
    if_field = forms.ChoiceField(choices=[("", "—"), *_choices(CONDITION_FIELDS)], required=False, label="If")
    if_op = forms.ChoiceField(choices=_choices(OPERATORS, OPERATOR_LABELS), required=False, label="Operator")
    if_value = forms.CharField(required=False, label="Value", help_text="Lists: separate with commas")
    then = forms.ChoiceField(required=False, label="Then go to")
    # update_customer
    set_plan = forms.CharField(required=False, max_length=200, label="Set plan to")
    set_company = forms.CharField(required=False, max_length=200, label="Set company to")
    set_owner = forms.CharField(required=False, max_length=200, label="Hand over to (username)")
    # webhook
    url = forms.CharField(required=False, max_length=2000, label="URL", widget=forms.URLInput(attrs={"size": 70}))
    payload = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="One name: value per line"
    )
    webhook_timeout = forms.FloatField(
        required=False, min_value=0.1, max_value=30, label="Timeout (seconds)", help_text="Default 10"
    )
    next = forms.ChoiceField(required=False, label="Then continue with")
    # A stored all/any condition, which the three condition fields cannot show: kept as it is
    # unless a field is chosen to replace it.
    if_group = forms.CharField(required=False, widget=forms.HiddenInput)
    until_group = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, step_keys: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "else" is a Python keyword: the definition's key, added by name.
        self.fields["else"] = forms.ChoiceField(required=False, label="Otherwise go to")
        keys = [(key, f"step {key}") for key in dict.fromkeys(step_keys or [])]
        self.fields["next"].choices = [("", "the next step"), ("end", "end the playbook"), *keys]
        for branch in ("then", "else"):
            self.fields[branch].choices = [("", "the next step"), ("end", "end the playbook"), *keys]
        for prefix in ("if", "until"):
            group = self[f"{prefix}_group"].value()
            if group:
                self.fields[
                    f"{prefix}_field"
                ].help_text = f"Now a combined condition, kept as it is: {group}. Choose a field to replace it."
        # Fields are marked with the types they belong to; the script shows only the chosen type's.
        for name, field in self.fields.items():
            types = [kind for kind, names in STEP_FIELDS.items() if name in names]
            if types:
                field.widget.attrs["data-field"] = name

    @property
    def chosen_type(self) -> str:
        value = self.data.get(self.add_prefix("type")) if self.is_bound else self.initial.get("type")
        return value if value in STEP_FIELDS else STEP_TYPES[0]

    def type_rows(self) -> list[dict]:
        """Every type's fields, those of other types hidden (the script switches them)."""
        chosen = self.chosen_type
        rows = []
        for name in self.fields:
            types = [kind for kind, names in STEP_FIELDS.items() if name in names]
            if types:
                rows.append({"field": self[name], "types": " ".join(types), "hidden": chosen not in types})
        return rows

    def clean(self) -> dict:
        data = super().clean()
        # Fields of the other types are not this step's: their leftovers are not its errors.
        wanted = {"type", "key", "name", "ORDER", "DELETE", "if_group", "until_group", *STEP_FIELDS[self.chosen_type]}
        for name in [name for name in self._errors if name not in wanted and name != "__all__"]:
            del self._errors[name]
        return data

    def _condition(self, prefix: str) -> dict | None:
        return condition_from_fields(self, prefix)

    def step(self, position: int) -> dict:
        """The step this form describes, as the definition stores it (before normalising)."""
        data = self.cleaned_data
        kind = data["type"]
        step: dict[str, Any] = {"type": kind, "key": data.get("key") or f"s{position}"}
        if data.get("name"):
            step["name"] = data["name"]

        def put(key: str, value: Any) -> None:
            if value not in (None, ""):
                step[key] = value

        if kind == "create_intervention":
            for name in ("intervention_type", "priority", "assignee", "description", "due_in_days"):
                put(name, data.get(name))
            if data.get("assignee") == "named":
                put("assignee_name", data.get("assignee_name"))
        elif kind == "send_email":
            for name in ("to", "subject", "body"):
                put(name, data.get(name))
        elif kind == "notify":
            put("channel", data.get("channel"))
            put("severity", data.get("notify_severity"))
            put("message", data.get("message"))
        elif kind == "create_alert":
            put("title", data.get("title"))
            put("severity", data.get("alert_severity"))
            put("message", data.get("message"))
        elif kind == "wait":
            for name in ("duration", "timeout", "check_every"):
                if data.get(name):
                    step[name] = _duration(data[name])
            put("until", self._condition("until"))
        elif kind == "condition":
            put("if", self._condition("if"))
            put("then", data.get("then"))
            put("else", data.get("else"))
        elif kind == "update_customer":
            step["fields"] = {
                name: data[f"set_{name}"] for name in UPDATABLE_CUSTOMER_FIELDS if data.get(f"set_{name}")
            }
        elif kind == "webhook":
            put("url", data.get("url"))
            try:
                put("payload", _payload(data.get("payload") or "") or None)
            except ValueError as exc:
                self.add_error("payload", str(exc))
            put("timeout", data.get("webhook_timeout"))
        if kind != "condition":
            put("next", data.get("next"))
        return step

    def show_errors(self, errors: Any) -> None:
        """Put `validate_steps`' errors for this step on the fields they name."""
        if not isinstance(errors, dict):
            self.add_error(None, [str(e) for e in errors] if isinstance(errors, list) else str(errors))
            return
        kind = self.chosen_type
        for key, detail in errors.items():
            if key in ("if", "until") and isinstance(detail, dict):
                for part, messages in detail.items():
                    name = f"{key}_{part}" if part in _CONDITION_PARTS else f"{key}_field"
                    self.add_error(name, _messages(messages))
                continue
            if key in ("if", "until"):
                self.add_error(f"{key}_field", _messages(detail))
                continue
            name = _FIELD_OF.get((kind, key), key)
            if name in self.fields and name in {"type", "key", "name", *STEP_FIELDS[kind]}:
                self.add_error(name, _messages(detail))
            else:
                self.add_error(None, [f"{key}: {m}" for m in _messages(detail)])


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _messages(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item)]
    return [str(detail)]


def step_initial(step: dict) -> dict:
    """A stored step → its form's initial values (a step stored without validation gives what it can)."""
    step = step if isinstance(step, dict) else {}
    kind = step.get("type")
    initial: dict[str, Any] = {"type": kind, "key": step.get("key", ""), "name": step.get("name", "")}
    simple = ("intervention_type", "priority", "assignee", "assignee_name", "description", "due_in_days")
    simple += ("to", "subject", "body", "channel", "title", "message", "url", "then", "else", "next")
    for name in simple:
        if name in step:
            initial[name] = step[name]
    if kind == "notify":
        initial["notify_severity"] = step.get("severity", "medium")
    if kind == "create_alert":
        initial["alert_severity"] = step.get("severity", "high")
    if kind == "wait":
        for name in ("duration", "timeout", "check_every"):
            if name in step:
                initial[name] = str(step[name])
    if kind == "webhook":
        payload = step.get("payload")
        initial["payload"] = _payload_text(payload) if isinstance(payload, dict) else ""
        initial["webhook_timeout"] = step.get("timeout")
    if kind == "update_customer":
        fields = step.get("fields")
        for name, value in (fields if isinstance(fields, dict) else {}).items():
            initial[f"set_{name}"] = value
    for key in ("until", "if"):
        initial.update(condition_initial(step.get(key), key))
    return initial


class BaseStepFormSet(forms.BaseFormSet):
    """The steps in their order (the order field, which the move buttons set), deleted ones left out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[dict] = []

    def get_form_kwargs(self, index: int | None) -> dict:
        return {**super().get_form_kwargs(index), "step_keys": self.step_keys()}

    def step_keys(self) -> list[str]:
        if not self.is_bound:
            return [item.get("key", "") for item in self.initial or [] if item.get("key")]
        keys = []
        for index in range(self.total_form_count()):
            key = self.data.get(f"{self.prefix}-{index}-key")
            if key and not self.data.get(f"{self.prefix}-{index}-DELETE"):
                keys.append(key)
        return keys

    def build(self) -> list[dict] | None:
        """Validate every step and the whole flow; the normalised steps, or None with the errors
        on the step forms."""
        if not self.is_valid():
            return None
        forms_in_order = list(self.ordered_forms)
        built = [form.step(position) for position, form in enumerate(forms_in_order)]
        if any(form.errors for form in forms_in_order):
            return None
        try:
            self.steps = validate_steps(built)
        except InvalidInputError as exc:
            detail = exc.errors.get("steps")
            if isinstance(detail, dict):
                for index, errors in detail.items():
                    forms_in_order[int(index)].show_errors(errors)
            else:
                self._non_form_errors = self.error_class(_messages(detail), renderer=self.renderer)
            return None
        return self.steps


StepFormSet = forms.formset_factory(
    StepForm, formset=BaseStepFormSet, extra=0, can_order=True, can_delete=True, max_num=50, validate_max=True
)


def steps_formset(data: Any, steps: list[dict] | None) -> BaseStepFormSet:
    initial = [step_initial(step) for step in steps or []]
    formset = StepFormSet(data, prefix="steps", initial=initial)
    formset.extra = 0 if initial else 1
    return formset


class ExitConditionForm(forms.Form):
    """One exit condition: a running playbook stops for a customer as soon as any of them holds."""

    exit_field = forms.ChoiceField(choices=[("", "—"), *_choices(CONDITION_FIELDS)], required=False, label="Field")
    exit_op = forms.ChoiceField(choices=_choices(OPERATORS, OPERATOR_LABELS), required=False, label="Operator")
    exit_value = forms.CharField(required=False, label="Value", help_text="Lists: separate with commas")
    exit_group = forms.CharField(required=False, widget=forms.HiddenInput)  # a combined condition, kept

    def group_text(self) -> str:
        """A combined (all/any) condition, which the three fields cannot show, in words."""
        group = self["exit_group"].value()
        try:
            return condition_text(json.loads(group)) if group else ""
        except (ValueError, TypeError, AttributeError):
            return str(group)


class BaseExitFormSet(forms.BaseFormSet):
    def build(self) -> list[dict] | None:
        """The exit conditions, blank and removed rows left out; None with the errors on their rows."""
        if not self.is_valid():
            return None
        kept_forms = [form for form in self.forms if not self._should_delete_form(form)]
        rows = [(form, condition_from_fields(form, "exit")) for form in kept_forms]
        if any(form.errors for form, _ in rows):
            return None
        kept = [(form, condition) for form, condition in rows if condition is not None]
        try:
            return validate_exit_conditions([condition for _, condition in kept])
        except InvalidInputError as exc:
            detail = exc.errors.get("exitConditions")
            if isinstance(detail, dict):
                for index, errors in detail.items():
                    form = kept[int(index)][0]
                    for part, messages in errors.items() if isinstance(errors, dict) else [("", errors)]:
                        target = f"exit_{part}" if part in ("field", "op", "value") else None
                        for message in _messages(messages):
                            form.add_error(target, message)
            else:
                self._non_form_errors = self.error_class(_messages(detail), renderer=self.renderer)
            return None


ExitFormSet = forms.formset_factory(
    ExitConditionForm, formset=BaseExitFormSet, extra=2, can_delete=True, max_num=20, validate_max=True
)


def exit_formset(data: Any, conditions: Any) -> BaseExitFormSet:
    initial = [condition_initial(condition, "exit") for condition in conditions or [] if isinstance(condition, dict)]
    return ExitFormSet(data, prefix="exit", initial=initial)


class DryRunForm(forms.Form):
    """The customer the dry run is for: the autocomplete asks the customers admin, scoped to the user."""

    customer = forms.ModelChoiceField(queryset=Customer.objects.none(), label="Dry run for", required=True)

    def __init__(self, *args: Any, user: Any, admin_site: admin.AdminSite, **kwargs: Any) -> None:
        super().__init__(*args, prefix="dryrun", **kwargs)
        field = self.fields["customer"]
        field.widget = AutocompleteSelect(PlaybookExecution._meta.get_field("customer"), admin_site)
        field.queryset = customer_scope(user=user)


def steps_outline(playbook: Playbook) -> list[dict]:
    """The stored steps in words for those who read without editing; steps stored without
    validation (by hand in the database) are shown as they are, marked invalid."""
    try:
        steps = validate_steps(playbook.steps)
    except InvalidInputError:
        return [
            {"key": "", "name": "", "label": "Not a valid step", "line": json.dumps(step, default=str)}
            for step in playbook.steps
        ]
    draft = Playbook(steps=steps, auto_send_customer_emails=playbook.auto_send_customer_emails)
    return [
        {
            "key": step["key"],
            "name": step.get("name", ""),
            "label": TYPE_LABELS[step["type"]],
            "line": read_only_line(step, line),
        }
        for step, line in zip(steps, selectors.step_outline(draft), strict=True)
    ]


class PlaybookEditorAdmin(admin.ModelAdmin):
    """The playbook change page with the step editor and its dry run (mixed into PlaybookAdmin)."""

    change_form_template = "admin/playbooks/playbook_change_form.html"

    class Media:
        css = {"all": ["playbooks/editor.css"]}
        js = ["playbooks/editor.js"]

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/editor-dry-run/", wrap(self.editor_dry_run_view), name="playbooks_playbook_editor_dry_run"),
            *super().get_urls(),
        ]

    def render_change_form(
        self, request: HttpRequest, context: dict, add: bool = False, change: bool = False, form_url: str = "", obj=None
    ) -> HttpResponse:
        form = context["adminform"].form
        editable = self.has_add_permission(request) if add else self.has_change_permission(request, obj)
        steps = obj.steps if obj is not None and isinstance(obj.steps, list) else []
        formset = getattr(form, "steps_formset", None) if editable else None
        exits = obj.exit_conditions if obj is not None and isinstance(obj.exit_conditions, list) else []
        dry_run = DryRunForm(user=request.user, admin_site=self.admin_site) if editable and obj else None
        context.update(
            {
                "steps_formset": formset,
                "exit_formset": getattr(form, "exit_formset", None) if editable else None,
                "exit_lines": [condition_text(c) if isinstance(c, dict) else str(c) for c in exits],
                "steps_outline": steps_outline(obj) if obj is not None and steps else [],
                "steps_json": json.dumps(steps, indent=2, sort_keys=True),
                "dry_run_form": dry_run,
                "dry_run_url": reverse("admin:playbooks_playbook_editor_dry_run", args=[obj.pk]) if obj else "",
            }
        )
        if formset is not None:
            context["media"] = context["media"] + formset.media
        if dry_run is not None:
            context["media"] = context["media"] + dry_run.media
        return super().render_change_form(request, context, add, change, form_url, obj)

    def editor_dry_run_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """What the steps in the editor (unsaved) would do for one customer. Writes nothing."""
        playbook = get_object_or_404(self.get_queryset(request), pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, playbook):
            raise PermissionDenied
        form = self.get_form(request, playbook, change=True)(request.POST, instance=playbook)
        pick = DryRunForm(request.POST, user=request.user, admin_site=self.admin_site)
        problems, rows, message = [], [], ""
        if not form.is_valid():
            problems = ["Some fields or steps need attention: fix them in the editor, then dry-run again."]
        if not pick.is_valid():
            problems.append("Choose one of your customers for the dry run.")
        if not problems:
            draft = form.instance  # the edited values, not saved
            customer = pick.cleaned_data["customer"]
            answer = selectors.dry_run(
                user=request.user, playbook=draft, customer_ids=[customer.pk], eligible_only=False
            )
            plan = answer.customers[0] if answer.customers else None
            enrols = answer.would_enrol == 1
            message = (
                f"{customer.name} would enrol today."
                if enrols
                else f"{customer.name} would not enrol today (already enrolled, enrolled recently, or inactive); "
                "if enrolled, the steps would do this."
            )
            if plan and plan.exits_immediately:
                message += " An exit condition holds already: the execution would end at once."
            rows = [[s.key, TYPE_LABELS[s.type], s.would_do] for s in (plan.steps if plan else [])]
            message += " Nothing was written."
        return TemplateResponse(
            request,
            "admin/playbooks/dry_run_result.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Dry run: {playbook.name}",
                "problems": problems,
                "message": message,
                "rows": rows,
                "opts": self.opts,
                "playbook": playbook,
            },
            status=400 if problems else 200,
        )


class PlaybookEditorFormMixin(forms.ModelForm):
    """The playbook form without the steps' JSON: the steps come from the step forms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        steps = self.instance.steps if isinstance(self.instance.steps, list) else []
        self.steps_formset = steps_formset(self.data if self.is_bound else None, steps)
        exits = self.instance.exit_conditions if isinstance(self.instance.exit_conditions, list) else []
        self.exit_formset = exit_formset(self.data if self.is_bound else None, exits)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "exit_conditions" not in self.fields:  # the JSON field is not in the form: the rows are
            exits = self.exit_formset.build()
            if exits is None:
                raise forms.ValidationError("Some exit conditions need attention: see them below.")
            self.instance.exit_conditions = exits
        if "steps" in self.fields:
            return data  # the JSON field is in the form (not the editor's page)
        steps = self.steps_formset.build()
        if steps is None:
            raise forms.ValidationError("Some steps need attention: see the steps below.")
        self.instance.steps = steps
        return data
