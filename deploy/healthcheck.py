"""The image's HEALTHCHECK: GET /healthz on this container's web server (no dependencies checked).

The request names the first of ALLOWED_HOSTS, so Django's host check passes whatever the deployer
lists; the worker and beat containers override the check (compose.yaml)."""

import os
import sys
import urllib.request

host = next((h.lstrip(".") for h in os.environ.get("ALLOWED_HOSTS", "localhost").split(",") if h not in ("", "*")), "")
request = urllib.request.Request(
    f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz", headers={"Host": host or "localhost"}
)
try:
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (fixed loopback http URL)
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
