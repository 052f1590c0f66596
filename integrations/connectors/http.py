"""The HTTP client every pull uses: explicit timeouts, retries with exponential backoff and jitter
on transient errors only (429, 5xx, timeouts, connection errors), and 429's Retry-After obeyed."""

from typing import Any

import httpx
from django.conf import settings
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential


class TransientError(Exception):
    """Worth retrying: the provider is busy or briefly broken."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying will not help (bad credentials, a bad request): fail the run now.

    `status` is the HTTP status (None when the answer was not JSON) and `detail` the provider's
    own explanation, read from its error body, for people (the connection test shows it).
    """

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def error_detail(response: httpx.Response) -> str:
    """The provider's explanation in an error answer: Stripe's `error.message`, HubSpot's
    `message`, Zendesk's `error`/`description`, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error.get("title") or error.get("type")
        for candidate in (body.get("message"), body.get("description"), error):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()[:300]
    return response.text[:200].strip()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class _Wait:
    """Retry-After when the provider sent one (capped), else exponential backoff with full jitter."""

    def __init__(self) -> None:
        self.backoff = wait_random_exponential(
            multiplier=settings.INTEGRATION_RETRY_BASE_SECONDS, max=settings.INTEGRATION_RETRY_MAX_SECONDS
        )

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientError) and error.retry_after is not None:
            return min(error.retry_after, settings.INTEGRATION_RETRY_AFTER_CAP_SECONDS)
        return self.backoff(state)


class ApiClient:
    """A provider's REST API at `base_url` (the real one by default; a loopback server in tests)."""

    def __init__(self, base_url: str, headers: dict[str, str], *, attempts: int | None = None) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.INTEGRATION_HTTP_TIMEOUT_SECONDS),
            follow_redirects=False,
        )
        self.requests = 0  # every attempt, retries included
        self.attempts = attempts

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        caller = retry(
            retry=retry_if_exception_type(TransientError),
            wait=_Wait(),
            stop=stop_after_attempt(self.attempts or settings.INTEGRATION_HTTP_ATTEMPTS),
            reraise=True,
        )(self._once)
        return caller(method, path, **kwargs)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        self.requests += 1
        try:
            response = self.http.request(method, path, **kwargs)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise TransientError(f"{method} {path}: {type(error).__name__}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"{method} {path}: HTTP {response.status_code}", _retry_after(response))
        if response.status_code >= 400:
            raise PermanentError(
                f"{method} {path}: HTTP {response.status_code} {response.text[:200]}",
                status=response.status_code,
                detail=error_detail(response),
            )
        try:
            return response.json()
        except ValueError as error:
            raise PermanentError(f"{method} {path}: the response is not JSON") from error
