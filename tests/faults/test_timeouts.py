"""X4's static half: nothing in the product can wait forever on the network.

Every outgoing HTTP, SMTP or socket call in the product's code passes an explicit timeout (an AST
scan, so a new call without one fails here), and the settings give every database and Redis
client a connect timeout and a statement/socket timeout (read from a fresh interpreter with
production-like URLs; no service is contacted).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.live.conftest import ROOT

SKIP_DIRS = {".venv", "tests", "bench", "migrations", "node_modules", "staticfiles", ".git"}
# Calls that open a connection or send a request, and where their timeout may be given.
HTTP_FUNCTIONS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream"}
CONSTRUCTORS = {
    ("httpx", "Client"),
    ("httpx", "AsyncClient"),
    ("requests", "Session"),
    ("smtplib", "SMTP"),
    ("smtplib", "SMTP_SSL"),
    ("http.client", "HTTPConnection"),
    ("http.client", "HTTPSConnection"),
}


def product_files() -> list[Path]:
    return [
        path
        for path in ROOT.rglob("*.py")
        if not SKIP_DIRS & set(path.relative_to(ROOT).parts) and "tests" not in path.parts
    ]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def calls_without_timeout(source: str) -> list[tuple[int, str]]:
    """(line, call) of every network call in `source` that passes no timeout."""
    tree = ast.parse(source)
    missing = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        keywords = {k.arg for k in node.keywords}
        module, _, function = name.rpartition(".")
        network = (
            (module in {"httpx", "requests"} and function in HTTP_FUNCTIONS)
            or name in {"urllib.request.urlopen", "urlopen", "socket.create_connection", "get_connection"}
            or (module.rsplit(".", 1)[-1], function) in {(m.rsplit(".", 1)[-1], f) for m, f in CONSTRUCTORS}
        )
        if (function == "from_url" and "redis" in module.lower()) or name in {"redis.Redis", "redis.StrictRedis"}:
            if None not in keywords and not {"socket_timeout", "socket_connect_timeout"} <= keywords:
                missing.append((node.lineno, name))
            continue
        if not network or None in keywords:  # **kwargs: cannot tell
            continue
        positional_timeout = name == "socket.create_connection" and len(node.args) >= 2
        if "timeout" not in keywords and not positional_timeout:
            missing.append((node.lineno, name))
    return missing


def test_the_scan_finds_calls_without_a_timeout():
    source = (
        "import httpx, smtplib, socket\n"
        "httpx.post(url)\n"
        "httpx.post(url, timeout=5)\n"
        "httpx.Client(base_url=u)\n"
        "smtplib.SMTP(host, 25)\n"
        "socket.create_connection((h, p), 3)\n"
        "get_connection()\n"
        "redis.Redis.from_url(url, socket_timeout=2)\n"
        "AsyncRedis.from_url(url, socket_timeout=2, socket_connect_timeout=2)\n"
    )
    assert calls_without_timeout(source) == [
        (2, "httpx.post"),
        (4, "httpx.Client"),
        (5, "smtplib.SMTP"),
        (7, "get_connection"),
        (8, "redis.Redis.from_url"),
    ]


def test_every_outgoing_network_call_in_the_product_has_an_explicit_timeout():
    files = product_files()
    assert len(files) > 50  # the scan sees the product, not an empty tree
    missing = [
        f"{path.relative_to(ROOT)}:{line} {call}"
        for path in files
        for line, call in calls_without_timeout(path.read_text())
    ]
    assert missing == []


SETTINGS_PROBE = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "db_options": {k: v for k, v in db["OPTIONS"].items() if k != "pool"},
    "pool_timeout": db["OPTIONS"]["pool"]["timeout"],
    "cache": settings.CACHES["default"].get("OPTIONS", {}),
    "broker": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "broker_connect": settings.CELERY_BROKER_CONNECTION_TIMEOUT,
    "results": [settings.CELERY_REDIS_SOCKET_TIMEOUT, settings.CELERY_REDIS_SOCKET_CONNECT_TIMEOUT],
    "layer": settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0],
    "email": settings.EMAIL_TIMEOUT,
    "integrations": settings.INTEGRATION_HTTP_TIMEOUT_SECONDS,
    "receiver": settings.WEBHOOK_RECEIVE_TIMEOUT_SECONDS,
}))
"""


def test_database_and_redis_clients_have_connect_and_operation_timeouts():
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "churnshield.settings.base",
        "DATABASE_URL": "postgres://app@db.internal:5432/churnshield",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "SECRET_KEY": "x" * 50,
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + SETTINGS_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    options = found["db_options"]
    assert 0 < options["connect_timeout"] <= 10
    assert "statement_timeout=" in options["options"] and "statement_timeout=0" not in options["options"]
    assert options["keepalives"] == 1 and 0 < found["pool_timeout"] <= 30
    assert 0 < found["cache"]["socket_timeout"] <= 30 and 0 < found["cache"]["socket_connect_timeout"] <= 10
    assert 0 < found["broker"]["socket_timeout"] <= 30 and 0 < found["broker"]["socket_connect_timeout"] <= 10
    assert 0 < found["broker_connect"] <= 10 and all(0 < t <= 120 for t in found["results"])
    assert 0 < found["layer"]["socket_connect_timeout"] <= 10
    assert all(0 < found[k] <= 30 for k in ("email", "integrations", "receiver"))
