"""GitHub-style pagination: the body stays a bare array; `Link` and `X-Total-Count` carry the rest."""

from typing import Any

from django.conf import settings
from django.core.paginator import InvalidPage, Paginator
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param


def positive_int_param(name: str, raw: str) -> int:
    """A query parameter documented as `integer, minimum 1`: anything else is a 400 naming it."""
    digits = raw.lstrip("0")
    if not (raw.isascii() and raw.isdigit() and digits):
        raise ValidationError({name: ["A whole number of at least 1 is required."]})
    # Past any page count or size cap; int() of a 5,000-digit text would raise.
    return int(digits) if len(digits) <= 18 else 10**18


class LinkHeaderPagination(BasePagination):
    """`?page=` and `?per_page=` (bounded), with `rel="first|prev|next|last"` links.

    A request with neither parameter gets every row up to `API_UNPAGED_MAX` in one page: the
    React app reads no paging headers and counts client-side, so a first page alone made its
    numbers wrong. Past the cap the headers still say so (`rel="next"`, `X-Total-Count`).
    """

    page_query_param = "page"
    page_size_query_param = "per_page"

    def get_page_size(self, request: Request) -> int:
        params = request.query_params
        if self.page_query_param not in params and self.page_size_query_param not in params:
            return max(1, settings.API_UNPAGED_MAX)
        raw = params.get(self.page_size_query_param)
        if raw is None:
            return settings.API_PAGE_SIZE
        # Above the maximum is capped (documented), a non-number or below 1 is a 400 naming it.
        return min(positive_int_param(self.page_size_query_param, raw), settings.API_MAX_PAGE_SIZE)

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None, count_queryset: Any = None, total: int | None = None
    ) -> list:
        """A page of `queryset`. `count_queryset` counts the total when `queryset` carries joins
        (e.g. `.values("owner__username")`) that the COUNT does not need; `total` is a count the
        caller already knows."""
        self.request = request
        paginator = Paginator(queryset, self.get_page_size(request))
        if total is not None:
            paginator.count = total  # Paginator.count is a cached_property
        elif count_queryset is not None:
            paginator.count = count_queryset.count()
        raw_page = request.query_params.get(self.page_query_param, "1")
        number = positive_int_param(self.page_query_param, raw_page)
        try:
            self.page = paginator.page(number)
        except InvalidPage as exc:
            if paginator.count == 0:
                self.page = paginator.page(1)
            else:
                raise NotFound(f"Invalid page {raw_page!r}.") from exc
        return list(self.page.object_list)

    def get_paginated_response(self, data: Any) -> Response:
        return Response(data, headers=self.get_headers())

    def get_headers(self) -> dict[str, str]:
        paginator = self.page.paginator
        url = self.request.build_absolute_uri()
        links = []

        def link(number: int, rel: str) -> None:
            links.append(f'<{replace_query_param(url, self.page_query_param, number)}>; rel="{rel}"')

        if self.page.has_next():
            link(self.page.next_page_number(), "next")
            link(paginator.num_pages, "last")
        if self.page.has_previous():
            link(1, "first")
            link(self.page.previous_page_number(), "prev")
        headers = {"X-Total-Count": str(paginator.count)}
        if links:
            headers["Link"] = ", ".join(links)
        return headers

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return schema

    def get_schema_operation_parameters(self, view: Any) -> list[dict]:
        return [
            {
                "name": self.page_query_param,
                "in": "query",
                "required": False,
                "description": (
                    f"Page number (1-based). With neither page nor {self.page_size_query_param}, the list "
                    f"is one page of up to {settings.API_UNPAGED_MAX} rows."
                ),
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": (
                    f"Items per page (default {settings.API_PAGE_SIZE}); a larger number is capped at "
                    f"{settings.API_MAX_PAGE_SIZE}."
                ),
                # No `maximum`: a larger per_page is served (capped), not refused.
                "schema": {"type": "integer", "minimum": 1},
            },
        ]
