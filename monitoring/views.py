"""/healthz (liveness), /readyz (readiness) and /metrics (Prometheus). Plain Django views: they sit
outside the API, its schema and its JWT authentication (probes and scrapers do not sign in)."""

import asyncio
import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET
from health_check.views import HealthCheckView
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from core.exceptions import error_body
from monitoring.health import readiness_checks


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and serving: no database, no Redis (a restart would not fix those)."""
    response = JsonResponse({"status": "ok"})
    add_never_cache_headers(response)
    return response


class ReadyzView(HealthCheckView):
    """Every dependency ChurnShield needs to do its job; 503 when any of them fails."""

    http_method_names = ["get"]

    async def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        pairs = list(readiness_checks())
        active = [(name, check) for name, check in pairs if check is not None]
        with self.get_executor() as executor:
            results = await asyncio.gather(*(check.get_result(executor) for _, check in active))
        by_name = dict(zip([name for name, _ in active], results, strict=True))
        checks: dict[str, dict] = {}
        for name, check in pairs:
            if check is None:
                checks[name] = {"status": "skipped", "reason": "not configured"}
                continue
            result = by_name[name]
            entry = {"status": "ok" if result.error is None else "error", "ms": round(result.time_taken * 1000, 2)}
            if result.error is not None:
                entry["error"] = result.error.message if hasattr(result.error, "message") else str(result.error)
            checks[name] = entry
        ready = all(entry["status"] != "error" for entry in checks.values())
        body = {"status": "ok" if ready else "unavailable", "checks": checks}
        return JsonResponse(body, status=200 if ready else 503)


def metrics_allowed(request: HttpRequest) -> bool:
    """A bearer token (METRICS_TOKEN) or a source address in METRICS_ALLOWED_NETWORKS."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in settings.METRICS_ALLOWED_NETWORKS)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        response = JsonResponse(error_body("Metrics need a valid bearer token.", "not_authenticated"), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
    add_never_cache_headers(response)
    return response
