"""GitHub-style pagination: the body stays a bare array; `Link` and `X-Total-Count` carry the rest."""

from typing import Any

from django.conf import settings
from django.core.paginator import InvalidPage, Paginator
from rest_framework.exceptions import NotFound
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param


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
        try:
            size = int(raw) if raw is not None else settings.API_PAGE_SIZE
        except ValueError:
            size = settings.API_PAGE_SIZE
        return max(1, min(size, settings.API_MAX_PAGE_SIZE))

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
        try:
            self.page = paginator.page(int(raw_page) if raw_page.isdigit() else raw_page)
        except (InvalidPage, ValueError) as exc:
            if raw_page.isdigit() and int(raw_page) >= 1 and paginator.count == 0:
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
                    f"Items per page (default {settings.API_PAGE_SIZE}, at most {settings.API_MAX_PAGE_SIZE})."
                ),
                "schema": {"type": "integer", "minimum": 1, "maximum": settings.API_MAX_PAGE_SIZE},
            },
        ]
