"""The request id of the work in progress (an HTTP request, or the Celery task it enqueued).

A contextvar, so it follows a request into asgiref's sync thread and stays separate per task.
"""

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)

# What we accept from a client's X-Request-ID: anything else (too long, odd characters that could
# forge log lines) is replaced by a fresh id.
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    return value if value and _VALID.match(value) else new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()
