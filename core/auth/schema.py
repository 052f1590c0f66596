"""Tell drf-spectacular how the API authenticates: a Bearer JWT or the HttpOnly access cookie."""

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class JWTBearerOrCookieScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.authentication.JWTBearerOrCookieAuthentication"
    name = ["jwtBearer", "jwtCookie"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list]]:
        # Either one signs a request in: two alternatives (a list), not one requirement naming
        # both (drf-spectacular's default for a list of names, which would mean "both at once").
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema: Any) -> list[dict]:
        return [
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            {"type": "apiKey", "in": "cookie", "name": settings.AUTH_COOKIE_ACCESS},
        ]
