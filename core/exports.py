"""CSV and XLSX downloads of the admin's lists and report tables, one mechanism for every page.

`ChangelistExportMixin` (which the admin site mixes into every ModelAdmin it registers) adds `export/csv/` and
`export/xlsx/` to a ModelAdmin: the rows of the changelist as filtered, searched, sorted and
scoped (the ChangeList's own queryset, so a CSM's file holds only their portfolio), the
`list_display` columns under the headers the list shows, values as the list shows them but
without HTML, and numbers as numbers. `table_export` does the same for report pages whose tables
are lists of rows.

Memory stays bounded whatever the size of the book: rows are read `EXPORT_CHUNK` at a time, CSV
lines are streamed as they are written, and the XLSX workbook is written row by row (openpyxl's
write-only mode) to a temporary file that is then streamed.

Every text cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return
first) is prefixed with a quote: an exported customer name must not run in a manager's Excel.
"""

import csv
import datetime as dt
import html
import json
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import label_for_field, lookup_field
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import strip_tags
from django.utils.safestring import SafeString
from django.utils.text import capfirst, slugify
from openpyxl import Workbook

FORMATS = ("csv", "xlsx")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORT_CHUNK = 2000
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_BLOCK_TAG = re.compile(r"<(div|br|p|li)\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_STREAM_BATCH = 200  # lines or file blocks handed from the database thread to the event loop at a time
_FILE_BLOCK = 64 * 1024


def neutralise(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula: text starting like one gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _plain(value: Any) -> Any:
    """A cell value without markup: numbers stay numbers, dates stay dates (local time), HTML becomes text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | Decimal | dt.date):
        if isinstance(value, dt.datetime) and timezone.is_aware(value):
            return timezone.localtime(value)
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, SafeString):
        text = html.unescape(strip_tags(_BLOCK_TAG.sub(r" <\1", value)))
        return _SPACES.sub(" ", text).strip()
    return str(value)


def _csv_cell(value: Any) -> Any:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return neutralise(value)


def _xlsx_cell(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)  # Excel has no time zones: the local wall time
    return neutralise(value)


class _Echo:
    """A file-like object whose write() hands the line back, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow([neutralise(h) for h in header])  # the byte order mark: Excel reads UTF-8
    for row in rows:
        yield writer.writerow([_csv_cell(value) for value in row])


def _xlsx_file(sheets: Sequence[tuple[str, Sequence[str], Iterable[Sequence[Any]]]]) -> Any:
    """A temporary file holding the workbook (one sheet per table), rewound."""
    workbook = Workbook(write_only=True)
    for title, header, rows in sheets:
        sheet = workbook.create_sheet(title=_sheet_title(title))
        sheet.append([neutralise(h) for h in header])
        for row in rows:
            sheet.append([_xlsx_cell(value) for value in row])
    # Closed by `_file_blocks` once streamed: the response outlives this function.
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    workbook.save(spool)
    spool.seek(0)
    return spool


def _sheet_title(title: str) -> str:
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Sheet"


def _file_blocks(file: Any) -> Iterator[bytes]:
    try:
        while block := file.read(_FILE_BLOCK):
            yield block
    finally:
        file.close()


async def _async_stream(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    """Feed a sync stream to the event loop in batches, on the request's own thread (its database
    connection and server-side cursor live there). Django would otherwise read a sync stream into
    a list before sending a byte under ASGI."""
    take = sync_to_async(lambda: list(islice(chunks, _STREAM_BATCH)), thread_sensitive=True)
    while batch := await take():
        for chunk in batch:
            yield chunk


def _download(request: HttpRequest, chunks: Iterator[Any], fmt: str, filename: str) -> StreamingHttpResponse:
    content = _async_stream(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    response["Cache-Control"] = "no-store"  # customer data: not for shared caches
    return response


def export_response(
    request: HttpRequest, fmt: str, filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> StreamingHttpResponse:
    """One table as a streamed CSV or XLSX download named `<filename>.<fmt>`."""
    return table_export(request, fmt, filename, [(filename, header, rows)])


def table_export(
    request: HttpRequest, fmt: str, filename: str, tables: Sequence[tuple[str, Sequence[str], Iterable[Sequence[Any]]]]
) -> StreamingHttpResponse:
    """Report tables as a download: XLSX has a sheet per table; CSV (one table per file) puts the
    tables one after another with the table's title as the first column when there are several."""
    if fmt == "xlsx":
        return _download(request, _file_blocks(_xlsx_file(tables)), fmt, filename)
    if len(tables) == 1:
        _, header, rows = tables[0]
        return _download(request, _csv_lines(header, rows), fmt, filename)
    width = max(len(header) for _, header, _ in tables)
    header = ["table", *(f"column {n}" for n in range(1, width + 1))]

    def stacked() -> Iterator[list[Any]]:
        for title, table_header, rows in tables:
            yield [title, *table_header]
            for row in rows:
                yield [title, *row]

    return _download(request, _csv_lines(header, stacked()), fmt, filename)


def dated_filename(stem: str) -> str:
    """`stem-YYYY-MM-DD` in the site's time zone."""
    return f"{slugify(stem)}-{timezone.localdate():%Y-%m-%d}"


def export_links(url: str, query: str = "") -> list[dict[str, str]]:
    """The CSV and XLSX links of a page whose export view takes `?format=`, keeping its `query`."""
    separator = "&" if query else ""
    return [{"format": fmt.upper(), "url": f"{url}?{query}{separator}format={fmt}"} for fmt in FORMATS]


def report_export(request: HttpRequest, title: str, tables: Sequence[dict[str, Any]]) -> StreamingHttpResponse | None:
    """The download a report page's `?format=csv|xlsx` asks for (tables as the page renders them:
    dicts of `title`, `headers`, `rows`), or None to render the page."""
    fmt = request.GET.get("format")
    if fmt not in FORMATS or request.method != "GET":
        return None
    return table_export(request, fmt, dated_filename(title), [(t["title"], t["headers"], t["rows"]) for t in tables])


def report_export_links(request: HttpRequest) -> list[dict[str, str]]:
    """The CSV and XLSX links of the report page being rendered (its own query kept)."""
    query = request.GET.copy()
    query.pop("format", None)
    return export_links(request.path, query.urlencode())


class ChangelistExportMixin:
    """Adds "Export CSV" and "Export XLSX" to a ModelAdmin's changelist (templates/admin/change_list.html).

    A ModelAdmin's `export_values` maps a column whose list text is a formatted number ("12.5%")
    to the number itself: an attribute path ("churn_risk") or a function of the row. (Read with
    getattr: the site puts this mixin before the ModelAdmin, whose attributes must win.)
    """

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"  # type: ignore[attr-defined]
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path("export/csv/", wrap(self.export_csv_view), name=f"{info}_export_csv"),
            path("export/xlsx/", wrap(self.export_xlsx_view), name=f"{info}_export_xlsx"),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        info = f"{self.opts.app_label}_{self.opts.model_name}"  # type: ignore[attr-defined]
        query = request.GET.urlencode()
        links = [
            {"format": fmt.upper(), "url": reverse(f"admin:{info}_export_{fmt}") + (f"?{query}" if query else "")}
            for fmt in FORMATS
        ]
        return super().changelist_view(request, {"export_links": links, **(extra_context or {})})  # type: ignore[misc]

    def export_csv_view(self, request: HttpRequest) -> HttpResponse:
        return self._export(request, "csv")

    def export_xlsx_view(self, request: HttpRequest) -> HttpResponse:
        return self._export(request, "xlsx")

    def _export(self, request: HttpRequest, fmt: str) -> HttpResponse:
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        try:
            queryset = self._export_changelist(request).get_queryset(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("These filters do not apply to this list.")
        columns = [name for name in self.get_list_display(request) if name != "action_checkbox"]  # type: ignore[attr-defined]
        model = self.opts.model  # type: ignore[attr-defined]
        header = [capfirst(str(label_for_field(name, model, model_admin=self))) for name in columns]
        rows = ([self._export_value(name, obj) for name in columns] for obj in queryset.iterator(EXPORT_CHUNK))
        return export_response(request, fmt, dated_filename(str(self.opts.verbose_name_plural)), header, rows)  # type: ignore[attr-defined]

    def _export_changelist(self, request: HttpRequest) -> Any:
        """The changelist the page would show, without counting and fetching the page it would show."""
        request._exporting = True  # type: ignore[attr-defined]  # read by get_changelist, per request
        return self.get_changelist_instance(request)  # type: ignore[attr-defined]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        changelist_class = super().get_changelist(request, **kwargs)  # type: ignore[misc]
        if not getattr(request, "_exporting", False):
            return changelist_class
        return type(f"Export{changelist_class.__name__}", (changelist_class,), {"get_results": _skip_results})

    def _export_value(self, name: Any, obj: Model) -> Any:
        export_values: dict[str, str | Callable[[Model], Any]] = getattr(self, "export_values", {})
        raw = export_values.get(name) if isinstance(name, str) else None
        if callable(raw):
            return raw(obj)
        if raw:
            value: Any = obj
            for part in raw.split("__"):
                value = None if value is None else getattr(value, part)
            return value
        field, _, value = lookup_field(name, obj, self)
        if field is not None and getattr(field, "flatchoices", None):
            value = dict(field.flatchoices).get(value, value)
        return value  # made plain (no HTML, local time) as it is written


def _skip_results(changelist: ChangeList, request: HttpRequest) -> None:
    changelist.result_count = changelist.full_result_count = 0
    changelist.result_list = []
