"""Request guards that run before any view."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from core.exceptions import error_body


class RejectNulBytesMiddleware:
    """Answer 400 to a NUL byte in the path or query string.

    PostgreSQL cannot store or compare text containing NUL; without this guard a search like
    `?search=%00` would reach the database and fail with a 500.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return JsonResponse(
                error_body("NUL characters are not allowed in the URL.", "invalid_characters"), status=400
            )
        return self.get_response(request)
