"""Trigger rules edited as forms: typed parameters per kind, the segment as condition rows, and the
rule in plain English for the list.

The form builds `params` and `segment` in exactly the shapes `rules.py` evaluates, so the stored
JSON (and with it the go-ahead fingerprint) is what the person saw. Fields of the other kinds and
the value inputs of the other condition fields are shown when JavaScript is off; the server
ignores them.
"""

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path, reverse

from customers.selectors import customer_scope, risk_thresholds
from playbooks import selectors
from playbooks.models import TriggerRule
from predictions.causes import CAUSES

Kind = TriggerRule.Kind

KIND_LABELS = {
    Kind.RISK_ENTERS_HIGH: "Risk rises to high",
    Kind.HEALTH_DROP: "Health score drops",
    Kind.FAILED_PAYMENT: "A payment fails",
    Kind.CAUSE_APPEARS: "A churn cause appears",
    Kind.RENEWAL_WITHIN: "Renewal is near",
    Kind.SEGMENT: "Everyone in the segment",
}


class Param(NamedTuple):
    """One typed parameter: the form field's name, the kind it belongs to and its key in `params`."""

    name: str
    kind: str
    key: str
    label: str
    minimum: int
    maximum: int
    initial: int | None


PARAMS = (
    Param("points", Kind.HEALTH_DROP, "points", "Drops by at least (points)", 1, 100, 20),
    Param("health_days", Kind.HEALTH_DROP, "days", "Within (days)", 1, 365, 30),
    Param("payment_days", Kind.FAILED_PAYMENT, "days", "Failed in the last (days)", 1, 90, 1),
    Param("renewal_days", Kind.RENEWAL_WITHIN, "days", "Renews within (days)", 1, 730, 60),
)
CAUSE_FIELD = "cause"
PARAM_NAMES = {Kind.CAUSE_APPEARS: (CAUSE_FIELD,)} | {
    kind: tuple(p.name for p in PARAMS if p.kind == kind) for kind in {p.kind for p in PARAMS}
}


# --- The segment ---------------------------------------------------------------------------------


class SegmentField(NamedTuple):
    label: str
    keys: dict[str, str]  # operator → key in `segment`
    value: str  # which value input of the row it reads: "plans", "levels", "owners" or "number"
    minimum: int = 0
    maximum: int | None = None


OPERATOR_LABELS = {"in": "is one of", "gte": "is at least", "lte": "is at most", "within": "within the last (days)"}
SEGMENT_FIELDS = {
    "plan": SegmentField("Plan", {"in": "plan"}, "plans"),
    "mrr": SegmentField("MRR", {"gte": "mrrGte", "lte": "mrrLte"}, "number"),
    "risk": SegmentField("Churn risk (%)", {"gte": "riskGte", "lte": "riskLte"}, "number", 0, 100),
    "risk_level": SegmentField("Risk level", {"in": "riskLevel"}, "levels"),
    "health": SegmentField("Health score", {"gte": "healthGte", "lte": "healthLte"}, "number", 0, 100),
    "owner": SegmentField("Owner", {"in": "ownerIds"}, "owners"),
    "signup": SegmentField("Signed up", {"within": "signupWithinDays"}, "number", 1, 3650),
}
SEGMENT_KEYS = {key: (name, op) for name, spec in SEGMENT_FIELDS.items() for op, key in spec.keys.items()}
RISK_LEVELS = (("high", "High"), ("medium", "Medium"), ("low", "Low"))
VALUE_INPUTS = ("plans", "levels", "owners", "number")
RANGES = (("mrrGte", "mrrLte", "MRR"), ("riskGte", "riskLte", "risk"), ("healthGte", "healthLte", "health"))
ROW_SPECS = {name: {"value": spec.value, "ops": list(spec.keys)} for name, spec in SEGMENT_FIELDS.items()}


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _segment_value(field: str, op: str, row: dict) -> Any:
    """The JSON value of one condition row (already validated)."""
    spec = SEGMENT_FIELDS[field]
    if spec.value == "owners":
        return [int(pk) for pk in row["owners"]]
    if spec.value in ("plans", "levels"):
        return list(row[spec.value])
    number: Decimal = row["number"]
    if field == "risk":  # people think in percent; the engine compares probabilities
        return _json_number((number / 100).quantize(Decimal("0.0001")))
    if field in ("health", "signup"):
        return int(number)
    return _json_number(number)


def _in_order(segment: dict) -> list[tuple[str, Any]]:
    """The segment's conditions in the order the fields are listed (keys the engine ignores left out)."""
    order = list(SEGMENT_KEYS)
    return sorted(((k, v) for k, v in segment.items() if k in SEGMENT_KEYS), key=lambda item: order.index(item[0]))


def segment_rows(segment: dict) -> list[dict]:
    """Initial rows for a stored segment."""
    rows = []
    for key, value in _in_order(segment):
        field, op = SEGMENT_KEYS[key]
        row: dict[str, Any] = {"field": field, "op": op}
        spec = SEGMENT_FIELDS[field]
        if spec.value == "number":
            row["number"] = Decimal(str(value)) * (100 if field == "risk" else 1)
            row["number"] = row["number"].normalize() if row["number"] % 1 else int(row["number"])
        elif spec.value == "owners":
            row["owners"] = [str(pk) for pk in value]
        else:
            row[spec.value] = list(value)
        rows.append(row)
    return rows


class ConditionForm(forms.Form):
    """One condition of the segment: field, operator and the value input that fits the field."""

    field = forms.ChoiceField(
        choices=[("", "— field —"), *((name, spec.label) for name, spec in SEGMENT_FIELDS.items())], required=False
    )
    op = forms.ChoiceField(label="Operator", choices=list(OPERATOR_LABELS.items()), required=False)
    plans = forms.MultipleChoiceField(label="Plans", required=False, widget=forms.CheckboxSelectMultiple)
    levels = forms.MultipleChoiceField(
        label="Risk levels", choices=RISK_LEVELS, required=False, widget=forms.CheckboxSelectMultiple
    )
    owners = forms.MultipleChoiceField(label="Owners", required=False, widget=forms.CheckboxSelectMultiple)
    number = forms.DecimalField(label="Number", required=False, max_digits=14, decimal_places=2)

    def __init__(self, *args: Any, plans: list[str], owners: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plans"].choices = [(plan, plan) for plan in plans]  # type: ignore[attr-defined]
        self.fields["owners"].choices = owners  # type: ignore[attr-defined]
        self.fields["number"].widget.attrs.update({"step": "any"})

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        field, op = data.get("field"), data.get("op")
        if not field:
            if any(data.get(name) for name in VALUE_INPUTS if name != "number") or data.get("number") is not None:
                self.add_error("field", "Choose what this condition looks at.")
            return data
        spec = SEGMENT_FIELDS[field]
        if op not in spec.keys:
            allowed = " or ".join(f"“{OPERATOR_LABELS[o]}”" for o in spec.keys)
            self.add_error("op", f"{spec.label} takes {allowed}.")
        # Only the value input that fits the field counts; the others (visible without JavaScript) are cleared.
        for name in VALUE_INPUTS:
            if name != spec.value:
                data[name] = None
                self.errors.pop(name, None)
        value = data.get(spec.value)
        if spec.value == "number":
            if value is None and spec.value not in self.errors:
                self.add_error("number", f"Enter a number for {spec.label}.")
            elif value is not None and value < spec.minimum:
                self.add_error("number", f"{spec.label} cannot be below {spec.minimum}.")
            elif value is not None and spec.maximum is not None and value > spec.maximum:
                self.add_error("number", f"{spec.label} cannot be above {spec.maximum}.")
            elif value is not None and field in ("health", "signup") and value % 1:
                self.add_error("number", f"{spec.label} takes a whole number.")
        elif not value and spec.value not in self.errors:
            self.add_error(spec.value, f"Pick at least one {spec.label.lower()}.")
        return data

    def segment_item(self) -> tuple[str, Any] | None:
        """`(key, value)` for the segment, or None for an empty row."""
        data = self.cleaned_data
        if not data.get("field"):
            return None
        return SEGMENT_FIELDS[data["field"]].keys[data["op"]], _segment_value(data["field"], data["op"], data)


class BaseConditionFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        seen: dict[str, int] = {}
        values: dict[str, Any] = {}
        for index, form in enumerate(self.forms):
            if self.can_delete and form.cleaned_data.get("DELETE"):
                continue
            item = form.segment_item()
            if item is None:
                continue
            key, value = item
            if key in seen:
                form.add_error("op", f"Condition {seen[key] + 1} already says this; change that one instead.")
                continue
            seen[key], values[key] = index, value
        for low, high, label in RANGES:
            if low in values and high in values and values[low] > values[high]:
                self.forms[seen[high]].add_error("number", f"Below the {label} minimum in condition {seen[low] + 1}.")

    def segment(self) -> dict:
        items = (
            form.segment_item() for form in self.forms if not (self.can_delete and form.cleaned_data.get("DELETE"))
        )
        return dict(item for item in items if item is not None)


ConditionFormSet = forms.formset_factory(
    ConditionForm, formset=BaseConditionFormSet, extra=1, can_delete=True, max_num=len(SEGMENT_KEYS)
)


def plan_names(user: Any, also: Iterable[str] = ()) -> list[str]:
    """The plans of the customers the user sees (and any already in the rule, so none is lost)."""
    plans = customer_scope(user=user).exclude(plan="").order_by("plan").values_list("plan", flat=True).distinct()
    return sorted(set(plans) | set(also))


def owner_choices(user: Any, also: Iterable[int] = ()) -> list[tuple[str, str]]:
    owners = customer_scope(user=user).exclude(owner=None).values("owner_id")
    users = get_user_model().objects.filter(pk__in=owners).union(get_user_model().objects.filter(pk__in=list(also)))
    return [(str(u.pk), u.get_username()) for u in sorted(users, key=lambda u: u.get_username())]


# --- The rule ------------------------------------------------------------------------------------


class TriggerRuleForm(forms.ModelForm):
    """The rule: its playbook, its kind and that kind's typed parameters, on/off; the segment rows are
    the `segment_rows` formset, validated with the form (its errors stay on their row and field)."""

    user: Any = None  # set by the admin per request (plans and owners the user sees)

    points = forms.IntegerField(required=False)
    health_days = forms.IntegerField(required=False)
    payment_days = forms.IntegerField(required=False)
    renewal_days = forms.IntegerField(required=False)
    cause = forms.ChoiceField(
        label="Cause", required=False, choices=[("", "— cause —"), *((name, name) for name in CAUSES)]
    )

    class Meta:
        model = TriggerRule
        fields = ["playbook", "kind", "is_active"]
        labels = {"kind": "Trigger when", "is_active": "Active"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_rows: BaseConditionFormSet = ConditionFormSet(  # type: ignore[assignment]
            prefix="segment", form_kwargs={"plans": [], "owners": []}
        )
        if "kind" not in self.fields:  # read-only (a viewer): the page shows the rule in words
            return
        self.fields["kind"].choices = [(kind.value, KIND_LABELS[kind]) for kind in Kind]  # type: ignore[attr-defined]
        self.fields["kind"].widget.attrs["data-rule-kind"] = ""
        stored = self.instance.params or {}
        for param in PARAMS:
            self.fields[param.name] = forms.IntegerField(
                label=param.label,
                required=False,
                min_value=param.minimum,
                max_value=param.maximum,
                initial=stored.get(param.key) if self.instance.kind == param.kind else param.initial,
            )
        if self.instance.kind == Kind.CAUSE_APPEARS:
            self.fields[CAUSE_FIELD].initial = stored.get("cause")
        segment = self.instance.segment or {}
        self.segment_rows = ConditionFormSet(  # type: ignore[assignment]
            self.data or None,
            prefix="segment",
            initial=None if self.is_bound else segment_rows(segment),
            form_kwargs={
                "plans": plan_names(self.user, segment.get("plan", [])),
                "owners": owner_choices(self.user, segment.get("ownerIds", [])),
            },
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        relevant = PARAM_NAMES.get(kind, ()) if kind else ()
        params: dict[str, Any] = {}
        for param in PARAMS:
            if param.name not in relevant:  # another kind's field: ignored, whatever it holds
                data[param.name] = None
                self.errors.pop(param.name, None)
            elif data.get(param.name) is None and param.name not in self.errors:
                self.add_error(param.name, f"{KIND_LABELS[Kind(str(kind))]} needs this.")
            elif param.name not in self.errors:
                params[param.key] = data[param.name]
        if kind == Kind.CAUSE_APPEARS:
            if data.get(CAUSE_FIELD):
                params["cause"] = data[CAUSE_FIELD]
            else:
                self.add_error(CAUSE_FIELD, "Choose the churn cause that starts the playbook.")
        else:
            data[CAUSE_FIELD] = ""
        if not self.segment_rows.is_valid():
            raise ValidationError("Check the segment conditions below.")
        if kind:
            self.instance.params = params
            self.instance.segment = self.segment_rows.segment()
        return data


# --- Plain English ------------------------------------------------------------------------------


def _number(value: Any) -> str:
    number = Decimal(str(value))
    return f"{number:,.0f}" if number == number.to_integral_value() else f"{number:,.2f}"


def _either(values: Iterable[Any]) -> str:
    names = [str(v) for v in values]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def trigger_text(kind: str, params: dict, high: float) -> str:
    if kind == Kind.RISK_ENTERS_HIGH:
        return f"Risk rises to high (≥ {_number(high * 100)} %)"
    if kind == Kind.HEALTH_DROP:
        return f"Health drops by {params.get('points', 20)}+ points within {params.get('days', 30)} days"
    if kind == Kind.FAILED_PAYMENT:
        days = params.get("days", 1)
        return "A payment fails" + (f" (looked back over {days} days)" if days != 1 else "")
    if kind == Kind.CAUSE_APPEARS:
        return f"“{params.get('cause', '?')}” appears among the churn causes"
    if kind == Kind.RENEWAL_WITHIN:
        return f"Renewal within {params.get('days', '?')} days"
    return "Every customer in the segment"


def segment_text(segment: dict, owners: dict[int, str]) -> str:
    parts = []
    for key, value in _in_order(segment):
        field, op = SEGMENT_KEYS[key]
        label = SEGMENT_FIELDS[field].label.replace(" (%)", "")
        label = label if field == "mrr" else label.lower()
        if key == "ownerIds":
            parts.append(f"owner is {_either(owners.get(pk, f'user {pk}') for pk in value)}")
        elif op == "in":
            parts.append(f"{label} is {_either(value)}")
        elif key == "signupWithinDays":
            parts.append(f"signed up in the last {value} days")
        else:
            shown = _number(Decimal(str(value)) * 100) + " %" if field == "risk" else _number(value)
            parts.append(f"{label} {'≥' if op == 'gte' else '≤'} {shown}")
    return " and ".join(parts)


def rule_text(rule: TriggerRule, *, high: float, owners: dict[int, str]) -> str:
    """ "Risk rises to high (≥ 70 %) — plan is Enterprise and MRR ≥ 1,000"."""
    trigger = trigger_text(rule.kind, rule.params or {}, high)
    if rule.kind == Kind.SEGMENT:
        return f"Every customer where {segment_text(rule.segment, owners)}" if rule.segment else trigger
    return f"{trigger} — {segment_text(rule.segment, owners)}" if rule.segment else trigger


def describe_rules(rules: Iterable[TriggerRule]) -> None:
    """Set `rule.text` on each rule: one read of the risk bands and one of the owners' names in all."""
    rules = list(rules)
    ids = {pk for rule in rules for pk in (rule.segment or {}).get("ownerIds", [])}
    owners = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")) if ids else {}
    high = risk_thresholds()[1]
    for rule in rules:
        rule.text = rule_text(rule, high=high, owners=owners)  # type: ignore[attr-defined]


def matches(count: int) -> str:
    return f"{count:,} customer" + ("" if count == 1 else "s")


# --- The admin page ------------------------------------------------------------------------------


def _kind_fieldset(kind: str, names: tuple[str, ...]) -> tuple[str, dict]:
    return (KIND_LABELS[Kind(kind)], {"fields": names, "classes": ("rule-params", f"rule-kind-{kind}")})


class TriggerRuleFormAdmin(admin.ModelAdmin):
    """The rule form on the change page, its live match count (`preview/`) and the plain-English list.

    Mixed into the TriggerRule admin before its scoped base class: it changes how a rule is edited
    and shown, not who may edit it or what a go-ahead approves."""

    form = TriggerRuleForm
    change_form_template = "admin/playbooks/triggerrule/change_form.html"
    list_display = ("rule", "playbook", "is_active", "automation", "go_ahead_link")
    list_display_links = ("rule",)
    fieldsets = (
        (None, {"fields": ("playbook", "kind")}),
        *(_kind_fieldset(kind, names) for kind, names in PARAM_NAMES.items()),  # type: ignore[arg-type]
        (None, {"fields": ("is_active",)}),
        (
            "Automatic enrolment",
            {"fields": ("automation", "approved_by", "approved_at", "approval_text"), "classes": ("rule-approval",)},
        ),
    )

    class Media:
        css = {"all": ["playbooks/rule_form.css"]}
        js = ["playbooks/rule_form.js"]

    @admin.display(description="Rule")
    def rule(self, obj: TriggerRule) -> str:
        if not hasattr(obj, "text"):
            describe_rules([obj])
        return obj.text  # type: ignore[attr-defined]

    @admin.display(description="Go-ahead given on")
    def approval_text(self, obj: TriggerRule) -> str:
        summary = obj.approval_summary or {}
        return f"a dry run that {summary['text']} ({summary.get('asOf', '')[:16]})" if summary.get("text") else "—"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):  # read-only: the rule in words
            return ((None, {"fields": ("playbook", "rule", "is_active")}), self.fieldsets[-1])
        return super().get_fieldsets(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        describe_rules(changelist.result_list)
        return changelist

    def render_change_form(self, request: HttpRequest, context: dict, *args: Any, **kwargs: Any) -> Any:
        obj = kwargs.get("obj")
        if obj is not None and obj.pk is not None:
            # The saved rule's match count now, for whoever reads the page (JavaScript updates it live).
            context["rule_preview"] = selectors.rule_preview(user=request.user, rule=obj)
            # The owners' names are the form's owner choices when it has them (no second read).
            known = {int(pk): name for pk, name in context["adminform"].form.segment_rows.form_kwargs["owners"]}
            if set((obj.segment or {}).get("ownerIds", [])) <= known.keys():
                obj.text = rule_text(  # type: ignore[attr-defined]
                    obj, high=risk_thresholds()[1], owners=known
                )
            context["subtitle"] = f"{obj.playbook.name}: {self.rule(obj)}"
        context["rule_editable"] = obj is None or self.has_change_permission(request, obj)
        context["rule_preview_url"] = reverse("admin:playbooks_triggerrule_preview")
        context["rule_fields"] = ROW_SPECS
        return super().render_change_form(request, context, *args, **kwargs)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [path("preview/", wrap(self.preview_view), name="playbooks_triggerrule_preview"), *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """How many customers the rule in the form would match now, among those the user sees.
        Writes nothing; answers 400 with the form's errors while the rule is incomplete."""
        if request.method != "POST":
            return JsonResponse({"error": "POST the rule form"}, status=405)
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        form = self.get_form(request)(request.POST, instance=TriggerRule())
        if not form.is_valid():
            rows = {i: f.errors for i, f in enumerate(form.segment_rows.forms) if f.errors}
            return JsonResponse({"errors": form.errors, "segment": rows}, status=400)
        preview = selectors.rule_preview(user=request.user, rule=form.instance)
        return JsonResponse(
            {
                "matched": preview.matched_visible,
                "wouldEnrol": preview.would_enrol,
                "text": f"Matches {matches(preview.matched_visible)} now; {preview.text}.",
            }
        )
