"""Django's error reports (the DEBUG 500 page, admin error e-mails) without credentials in URLs.

Django's `SafeExceptionReporterFilter` hides settings by NAME (API, TOKEN, KEY, SECRET, PASS, ...),
but `REDIS_URL`, `CELERY_BROKER_URL`, `CACHES[...]["LOCATION"]` or the channel layer's hosts carry
their password inside the value, under names that look harmless: one REDIS_URL is printed five
times. This filter also replaces the password of every `scheme://user:password@` it finds in a
setting, request.META (the process environment under WSGI) or a frame's local variables.
"""

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

# scheme://[user]:password@ — the password runs to the last '@' before whitespace: an unencoded
# '@' in a password stays masked, at the price of hiding more than the password now and then.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)\S+@")


def mask_url_credentials(text: str, substitute: str) -> str:
    """`text` with the password of every URL in it replaced by `substitute` (the user is kept)."""
    return _URL_PASSWORD.sub(lambda match: f"{match['head']}{substitute}@", text)


class UrlCredentialsReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus the passwords inside URL values (at any depth of a setting)."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Django recurses through dicts, lists and tuples by calling this method again, so nested
        # strings (CHANNEL_LAYERS' hosts, CACHES' LOCATION) come through here one by one.
        cleansed = super().cleanse_setting(key, value)
        # Exact types: a lazy object passes isinstance checks and would be evaluated by them.
        if type(cleansed) is str:
            return mask_url_credentials(cleansed, self.cleansed_substitute)
        return cleansed

    def cleanse_special_types(self, request: Any, value: Any) -> Any:
        # Frame variables: a URL in a local (a client's connection string) is a credential too.
        value = super().cleanse_special_types(request, value)
        if type(value) in (str, dict, list, tuple):
            return self.cleanse_setting("", value)
        return value
