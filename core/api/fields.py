"""Input fields that take the type the OpenAPI schema documents, and nothing DRF would coerce.

DRF reads `"12"` as 12, `0` as `"0"` and `"no"` as False. The schema says `integer`, `string`,
`boolean`, so a JSON body must carry exactly those types: a client that sends the wrong one hears
a 400 naming the field instead of having its value reinterpreted. A form or multipart body has
only text, so there an integer is its digits and a boolean is `true` or `false`.
"""

import re
import zoneinfo
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_ID = 2**31 - 1


def _from_form(field: serializers.Field) -> bool:
    """Whether the body being validated is a form (all text), not JSON."""
    return isinstance(getattr(field.root, "initial_data", None), QueryDict)


class CharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class IntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if _from_form(self):
            if not (isinstance(data, str) and data.isascii() and data.lstrip("-").isdigit()):
                self.fail("invalid")
        elif isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class BooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if _from_form(self) and isinstance(data, str) and data.lower() in ("true", "false"):
            return data.lower() == "true"
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class IdField(IntegerField):
    """A row id: a whole number from 1 to 2**31 - 1."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


# The digits of 1 to 2**31 - 1, no leading zero: a string id matches it exactly when it is in range.
ID_DIGITS_PATTERN = (
    r"^(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
    r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])$"
)


@extend_schema_field(
    {"oneOf": [{"type": "integer", "minimum": 1, "maximum": MAX_ID}, {"type": "string", "pattern": ID_DIGITS_PATTERN}]}
)
class IdOrDigitsField(serializers.IntegerField):
    """A row id the React app may send as a number or as its digits ("12")."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, str) and not re.fullmatch(ID_DIGITS_PATTERN, data):
            self.fail("invalid")
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        return super().to_internal_value(data)


MONEY_LIMIT = Decimal("9999999999.99")  # DecimalField(max_digits=12, decimal_places=2)


@extend_schema_field({"type": "number", "minimum": -MONEY_LIMIT, "maximum": MONEY_LIMIT})
class MoneyField(serializers.Field):
    """An amount the app sends as a JSON number (`1200.5`), kept to the cent (half to even)."""

    default_error_messages = {
        "invalid": "A number is required.",
        "range": f"Must be between -{MONEY_LIMIT} and {MONEY_LIMIT}.",
    }

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        amount = Decimal(str(data))
        if not amount.is_finite() or abs(amount) > MONEY_LIMIT:
            self.fail("range")
        return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)

    def to_representation(self, value: Decimal) -> float:
        return float(value)


# The IANA names this server knows (`ZoneInfo` takes each of them): the schema's TimeZoneEnum.
TIME_ZONE_NAMES = sorted(zoneinfo.available_timezones())
_TIME_ZONES = frozenset(TIME_ZONE_NAMES)


@extend_schema_field({"type": "string", "enum": TIME_ZONE_NAMES})
class TimeZoneField(CharField):
    """An IANA time zone name (`Europe/Paris`)."""

    default_error_messages = {"unknown": "Unknown time zone {value!r} (an IANA name such as Europe/Paris)."}

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value not in _TIME_ZONES:
            self.fail("unknown", value=value[:64])
        return value
