"""Structured JSON logs: one JSON object per line, with the request id, and no secrets.

`LOGGING` in settings wires these: `JsonFormatter` renders, `ContextFilter` adds request/task ids,
`RedactFilter` scrubs tokens, passwords and signatures from every message before any handler
writes it (a test drives sign-in, refresh and a secret-bearing request, then greps the output).
"""

import datetime as dt
import logging
import re

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from monitoring.context import request_id_var, task_id_var

REDACTED = "[REDACTED]"
_PATTERNS = [
    # JWTs (header.payload.signature, base64url): access and refresh tokens.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization header values.
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # Provider secrets with well-known prefixes (Svix/Standard Webhooks, Stripe, Slack).
    (re.compile(r"\b(whsec|sk_live|sk_test|rk_live|xox[abpr])[_-][A-Za-z0-9+/=_-]{6,}"), REDACTED),
    # key=value / "key": "value" pairs whose key names a secret.
    (
        re.compile(
            r"(?i)([\"']?\b[\w-]*(?:password|passwd|secret|token|ticket|api[_-]?key|authorization|signature|cookie)"
            r"[\w-]*[\"']?\s*[:=]\s*[\"']?)([^\"'\s&;}]+)"
        ),
        rf"\1{REDACTED}",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Scrub secrets from the rendered message and any traceback text of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class ContextFilter(logging.Filter):
    """Stamp the current request id and Celery task id on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        if not getattr(record, "task_id", None):
            record.task_id = task_id_var.get()
        return True


class JsonFormatter(_BaseJsonFormatter):
    """python-json-logger with our field names: ts (UTC ISO), level, logger, message, ids, extras."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "ts", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds")

    def add_fields(self, log_record: dict, record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_record, record, message_dict)
        for key in ("request_id", "task_id"):
            value = getattr(record, key, None)
            if value:
                log_record[key] = value
            else:
                log_record.pop(key, None)
        # Django attaches the request object to some records; it is not JSON and may carry cookies.
        log_record.pop("request", None)
        for key, value in list(log_record.items()):
            if isinstance(value, str) and key not in ("ts", "level", "logger"):
                log_record[key] = redact(value)


def build_logging(*, level: str = "INFO", json: bool = True) -> dict:
    """The LOGGING dict: every record goes through the context and redaction filters to stderr."""
    formatter = {"()": "monitoring.logs.JsonFormatter"} if json else {"format": "%(levelname)s %(name)s %(message)s"}
    handler_filters = ["context", "redact"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "monitoring.logs.ContextFilter"},
            "redact": {"()": "monitoring.logs.RedactFilter"},
        },
        "formatters": {"main": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "main", "filters": handler_filters},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "axes": {"level": "WARNING"},
            # Uvicorn's access log prints the query string (tokens could hide there) in plain text;
            # our middleware writes a JSON access line with the path only. Uvicorn's WebSocket
            # handshake lines (`"WebSocket /ws/alerts?ticket=…" [accepted]`) go to uvicorn.error:
            # the redaction filter also sits on these loggers, so a record is scrubbed before any
            # handler (ours, or uvicorn's own under --log-config) can write it.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "uvicorn": {"handlers": ["console"], "level": level, "propagate": False, "filters": ["redact"]},
            "uvicorn.error": {"handlers": ["console"], "level": level, "propagate": False, "filters": ["redact"]},
            "celery": {"handlers": ["console"], "level": level, "propagate": False},
        },
    }
