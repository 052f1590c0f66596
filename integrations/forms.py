"""The setup form of an integration: one typed field per setting its connector declares
(`Connector.settings_schema`), so the form and the connector read the same list.

Secrets are write-only: never rendered back (the field says whether one is stored), a blank
entry keeps the stored value, and the "remove" box beside it deletes it. Keys a connector does not
declare (a rotated `signing_secrets` list, an old setting) are kept as they are.
"""

import copy
from collections.abc import Callable
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from integrations import setup
from integrations.connectors.base import Setting, connector_class, providers
from integrations.models import Integration

MAX_SYNC_MINUTES = 24 * 60


def provider_choices() -> list[tuple[str, str]]:
    return [(name, cls.label or name) for name in providers() if (cls := connector_class(name))]


def _validator(check: Callable[[str], None]) -> Callable[[Any], None]:
    def validate(value: Any) -> None:
        try:
            check(str(value))
        except ValueError as error:
            raise ValidationError(str(error)) from None

    return validate


def setting_field(setting: Setting) -> forms.Field:
    """The form field for one declared setting."""
    validators = [_validator(setting.check)] if setting.check else []
    attrs = {"placeholder": setting.placeholder} if setting.placeholder else {}
    common: dict[str, Any] = {"label": setting.label, "help_text": setting.help, "required": False}
    if setting.is_secret:
        return forms.CharField(
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "size": 50}),
            validators=validators,
            **common,
        )
    if setting.kind == "url":
        return forms.URLField(
            widget=forms.URLInput(attrs={**attrs, "size": 50}), assume_scheme="https", validators=validators, **common
        )
    if setting.kind == "email":
        return forms.EmailField(widget=forms.EmailInput(attrs=attrs), validators=validators, **common)
    if setting.kind == "minutes":
        return forms.IntegerField(min_value=1, max_value=MAX_SYNC_MINUTES, validators=validators, **common)
    return forms.CharField(widget=forms.TextInput(attrs=attrs), validators=validators, **common)


def _lower_first(label: str) -> str:
    """Lower-case the first word unless it is an acronym: "API key", "webhook signing secret"."""
    first, _, rest = label.partition(" ")
    return label if first.isupper() else f"{first.lower()} {rest}".strip()


def clear_field_name(key: str) -> str:
    return f"clear_{key}"


class IntegrationSetupForm(forms.ModelForm):
    """The base of every provider's form (see `integration_form`)."""

    provider: ClassVar[str] = ""
    schema: ClassVar[tuple[Setting, ...]] = ()

    # Filled in by the page's script from a successful connection test of these settings.
    connection_check = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Integration
        fields = ("name",)
        widgets = {"name": forms.TextInput(attrs={"size": 40})}
        help_texts = {"name": "How lists and alerts call it, e.g. “Stripe (EU account)”."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_config: dict[str, Any] = copy.deepcopy(self.instance.config or {}) if self.instance.pk else {}
        self.config: dict[str, Any] | None = None
        self.verified = False
        for setting in self.schema:
            field = self.fields[setting.key]
            if setting.is_secret:
                stored = bool(self.stored_config.get(setting.key))
                field.widget.attrs["placeholder"] = "set — leave blank to keep" if stored else "not set"
                field.help_text = ("Set; leave blank to keep it. " if stored else "Not set. ") + setting.help
            elif setting.key in self.stored_config:
                self.initial.setdefault(setting.key, self.stored_config[setting.key])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        config = {**copy.deepcopy(self.stored_config), "provider": self.provider}
        for setting in self.schema:
            if setting.key in self.errors:
                continue
            value = cleaned.get(setting.key)
            if setting.is_secret:
                if cleaned.get(clear_field_name(setting.key)):
                    if value:
                        self.add_error(setting.key, "Enter a new value or remove the stored one, not both.")
                        continue
                    config.pop(setting.key, None)
                elif value:
                    config[setting.key] = value
            elif value in (None, ""):
                config.pop(setting.key, None)
            else:
                config[setting.key] = value
            if setting.required and not config.get(setting.key):
                self.add_error(setting.key, "This field is required.")
        cls = connector_class(self.provider)
        for key, message in (cls.settings_errors(config) if cls else {}).items():
            if key not in self.errors:
                self.add_error(key, message)
        if not any(setting.key in self.errors for setting in self.schema):
            self.config = config
            self.verified = setup.connection_verified(
                token=cleaned.get("connection_check") or "", provider=self.provider, config=config
            )
        return cleaned

    @property
    def settings_valid(self) -> bool:
        """Whether the provider's settings are valid, whatever the rest of the form says."""
        return self.config is not None

    def save(self, commit: bool = True) -> Integration:
        if self.config is not None:
            self.instance.config = self.config
        cls = connector_class(self.provider)
        if cls is not None:
            self.instance.type = cls.type
        return super().save(commit=commit)


class ProviderChoiceForm(forms.ModelForm):
    """For an integration with no known provider yet (made before setup forms existed)."""

    provider = forms.ChoiceField(choices=provider_choices, help_text="Save, and the provider's settings appear.")
    connection_check = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Integration
        fields = ("name",)
        widgets = {"name": forms.TextInput(attrs={"size": 40})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_config: dict[str, Any] = copy.deepcopy(self.instance.config or {}) if self.instance.pk else {}
        self.verified = False

    def save(self, commit: bool = True) -> Integration:
        provider = self.cleaned_data["provider"]
        self.instance.config = {**self.stored_config, "provider": provider}
        cls = connector_class(provider)
        if cls is not None:
            self.instance.type = cls.type
        return super().save(commit=commit)


_forms: dict[str, type[forms.ModelForm]] = {}


def integration_form(provider: str) -> type[forms.ModelForm]:
    """The setup form class of `provider` (built once per provider), or the provider choice."""
    cls = connector_class(provider)
    if cls is None:
        return ProviderChoiceForm
    if provider not in _forms:
        attrs: dict[str, Any] = {"provider": provider, "schema": cls.settings_schema, "__module__": __name__}
        for setting in cls.settings_schema:
            attrs[setting.key] = setting_field(setting)
            if setting.is_secret:
                attrs[clear_field_name(setting.key)] = forms.BooleanField(
                    required=False, label=f"Remove the stored {_lower_first(setting.label)}"
                )
        _forms[provider] = type(f"{provider.title()}SetupForm", (IntegrationSetupForm,), attrs)
    return _forms[provider]
