"""Reads about integrations. Secrets in `config` never leave the server."""

import re
from typing import Any

from django.db.models import QuerySet

from integrations.models import Integration

SECRET_KEY_PATTERN = re.compile(
    r"password|secret|token|hash|api_?key|write_?key|signing|private|credential|dsn", re.IGNORECASE
)


def integration_list() -> QuerySet[Integration]:
    return Integration.objects.order_by("id")


def public_config(config: Any) -> Any:
    """`config` without any key that looks like a secret, at any depth."""
    if isinstance(config, dict):
        return {key: public_config(value) for key, value in config.items() if not SECRET_KEY_PATTERN.search(str(key))}
    if isinstance(config, list):
        return [public_config(item) for item in config]
    return config
