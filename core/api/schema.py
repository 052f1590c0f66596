"""Schema helpers: what the strict input fields (core.api.fields) refuse, and a free-form answer."""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import inline_serializer

# An answer documented as a JSON object without a fixed shape (the contract's analytics bodies).
AnyObject = inline_serializer("AnyObject", fields={})


class StrictCharFieldExtension(OpenApiSerializerFieldExtension):
    """DRF refuses a NUL character in any text, and trims a required text before finding it blank:
    say so with a pattern, so `" "` and `"a\\u0000b"` are schema-invalid as they are invalid here."""

    target_class = "core.api.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request" and "pattern" not in schema and "enum" not in schema:
            if self.target.trim_whitespace and not self.target.allow_blank:
                schema["pattern"] = r"^[^\x00]*[^\s\x00][^\x00]*$"
            else:
                # Not `*`: drf-spectacular makes a blank-allowed text with a pattern `oneOf` this
                # pattern or `maxLength: 0`, and "" must match only the second.
                schema["pattern"] = r"^[^\x00]+$"
        return schema
