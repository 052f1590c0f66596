"""Customer endpoints: list, detail, sessions, timeline, CSV import, history import jobs."""

import csv
import io

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from core.api.pagination import positive_int_param
from core.auth.permissions import IsManagerOrAdmin
from customers import selectors, services
from customers.api import renderers
from customers.api.serializers import (
    CsvImportInputSerializer,
    CsvImportOutputSerializer,
    CsvImportRejectedSerializer,
    CustomerDetailSerializer,
    CustomerOutputSerializer,
    ImportJobInputSerializer,
    ImportJobOutputSerializer,
    SessionOutputSerializer,
    TimelineEventSerializer,
)
from customers.filters import CustomerFilter
from customers.history.jobs import UploadError, check_options, import_job_create
from customers.models import Customer
from customers.timeline import (
    CURSOR_PATTERN,
    Cursor,
    cursor_decode,
    cursor_encode,
    customer_detail_sections,
    customer_timeline,
)


class CustomerViewSet(viewsets.GenericViewSet):
    filterset_class = CustomerFilter
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Customer.objects.none()
        return selectors.customer_scope(user=self.request.user).order_by("id")

    @extend_schema(responses=CustomerOutputSerializer(many=True))
    def list(self, request: Request) -> Response:
        customers = self.filter_queryset(self.get_queryset())
        filtered = CustomerFilter.narrows(request.query_params)
        page = self.paginator.paginate_queryset(
            selectors.CustomerPages(customers),
            request,
            view=self,
            count_queryset=customers,
            total=None if filtered else selectors.customer_count(user=request.user),
        )
        return self.get_paginated_response(renderers.customer_rows_body(page))

    @extend_schema(responses=CustomerDetailSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        customer = selectors.customer_get(user=request.user, customer_id=pk)
        return Response({**renderers.customer_body(customer), **customer_detail_sections(customer.pk)})

    @extend_schema(responses=SessionOutputSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None)
    def sessions(self, request: Request, pk: str) -> Response:
        customer = selectors.customer_get(user=request.user, customer_id=pk)
        page = self.paginate_queryset(selectors.customer_sessions(customer=customer).values(*selectors.SESSION_VALUES))
        return self.get_paginated_response([renderers.session_row_body(row) for row in page])

    @extend_schema(
        responses=TimelineEventSerializer(many=True),
        filters=False,
        parameters=[
            OpenApiParameter(
                "cursor",
                OpenApiTypes.STR,
                pattern=f"^$|{CURSOR_PATTERN}",
                description="From the `Link: rel=next` header; empty is the first page.",
            ),
            OpenApiParameter(
                "per_page",
                {"type": "integer", "minimum": 1},
                description="Events per page (default 50; a larger number is capped at 200). Without cursor "
                "or per_page, every event up to API_UNPAGED_MAX.",
            ),
        ],
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def timeline(self, request: Request, pk: str) -> Response:
        customer = selectors.customer_get(user=request.user, customer_id=pk)
        cursor = _parse_cursor(request.query_params.get("cursor"))
        if cursor is None and "per_page" not in request.query_params:
            limit = max(1, settings.API_UNPAGED_MAX)  # a client that does not page gets it whole
        else:
            limit = min(positive_int_param("per_page", request.query_params.get("per_page", "50")), 200)
        events, next_cursor = customer_timeline(customer_id=customer.pk, cursor=cursor, limit=limit)
        headers = {}
        if next_cursor:
            url = replace_query_param(request.build_absolute_uri(), "cursor", cursor_encode(next_cursor))
            headers["Link"] = f'<{url}>; rel="next"'
        body = [renderers.timeline_event_body(event) for event in events]
        return Response(body, headers=headers)


def _parse_cursor(raw: str | None) -> Cursor | None:
    if not raw:
        return None
    try:
        return cursor_decode(raw)
    except ValueError:
        raise ValidationError({"cursor": ["Invalid cursor."]}) from None


class CustomerCsvImportView(APIView):
    @extend_schema(
        request=CsvImportInputSerializer, responses={200: CsvImportOutputSerializer, 400: CsvImportRejectedSerializer}
    )
    def post(self, request: Request) -> Response:
        data = CsvImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.customer_import_csv(user=request.user, text=data.validated_data["csv"])
        body = {
            "success": result.success,
            "created": result.created,
            "updated": result.updated,
            "errors": result.errors,
            "ignoredColumns": result.ignored_columns,
        }
        if not result.success:
            count = len({error["row"] for error in result.errors})
            body["message"] = f"{count} row(s) are invalid; nothing was imported."
            body["code"] = "invalid_rows"
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body)


class UploadTooLarge(ValidationError):
    """A 413 in the API's error shape, naming the field."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


# Room for the multipart framing and the option fields around the files.
_MULTIPART_SLACK = 1 << 20


class ImportJobCreateView(APIView):
    """Upload history files; a worker imports them (poll the job for progress and the result)."""

    permission_classes = [IsManagerOrAdmin]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ImportJobInputSerializer},
        responses={202: ImportJobOutputSerializer, 400: CsvImportRejectedSerializer, 413: CsvImportRejectedSerializer},
    )
    def post(self, request: Request) -> Response:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.IMPORT_MAX_UPLOAD_BYTES + _MULTIPART_SLACK:
            limit = settings.IMPORT_MAX_UPLOAD_BYTES
            raise UploadTooLarge({"files": [f"The upload is {length:,} bytes; at most {limit:,} are accepted."]})
        options = ImportJobInputSerializer(data=request.data, partial=True)
        options.is_valid(raise_exception=True)
        data = options.validated_data
        mapping_file = request.FILES.get("mapping")
        try:
            mapping = check_options(
                on_error=data.get("onError", "reject"),
                tz=data.get("timezone", "UTC"),
                mapping=mapping_file.read() if mapping_file else None,
                mapping_name=mapping_file.name if mapping_file else "mapping.json",
            )
            job = import_job_create(
                user=request.user,
                files=request.FILES.getlist("files"),
                dry_run=data.get("dryRun", False),
                on_error=data.get("onError", "reject"),
                tz=data.get("timezone", "UTC"),
                mapping=mapping,
            )
        except UploadError as error:
            refusal = UploadTooLarge if error.too_large else ValidationError
            raise refusal({error.field: [str(error)]}) from None
        body = renderers.import_job_body(job)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/imports/{job.pk}"})


class ImportJobView(APIView):
    permission_classes = [IsManagerOrAdmin]

    @extend_schema(responses=ImportJobOutputSerializer)
    def get(self, request: Request, pk: str) -> Response:
        return Response(renderers.import_job_body(selectors.import_job_get(job_id=pk)))


class ImportJobErrorsView(APIView):
    permission_classes = [IsManagerOrAdmin]

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, pk: str) -> HttpResponse:
        job = selectors.import_job_get(job_id=pk)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(selectors.import_job_error_rows(job))
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        return response
