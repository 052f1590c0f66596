"""A JSON parser that bounds the body before it parses it.

DRF reads the request stream directly, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE never applies to
JSON bodies. This parser reads at most that many bytes (chunked bodies included) and answers 413
beyond it; orjson then refuses pathological nesting instead of overflowing the stack.
"""

from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from core.api.errors import PayloadTooLarge


class BoundedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        if stream is None:
            return {}
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        if not body.strip():
            return {}
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
