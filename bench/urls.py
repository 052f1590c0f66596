"""The product's routes plus the baseline: the same customer rows straight from a cursor."""

import orjson
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path

from churnshield.urls import urlpatterns as product_urlpatterns

RAW_SQL = (
    "SELECT id, name, email, company, plan, mrr, signup_date, last_login, health_score, churn_risk,"
    " nps_score, support_tickets, feature_usage, is_active, churned_at, owner_id"
    " FROM customers ORDER BY id LIMIT %s OFFSET %s"
)


def raw_customers(request: HttpRequest) -> HttpResponse:
    """No auth, no ORM, no serializer: the floor the real endpoint is measured against."""
    per_page = min(int(request.GET.get("per_page", 100)), 10000)
    page = max(int(request.GET.get("page", 1)), 1)
    with connection.cursor() as cursor:
        cursor.execute(RAW_SQL, [per_page, (page - 1) * per_page])
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return HttpResponse(orjson.dumps(rows, default=str), content_type="application/json")


urlpatterns = [path("bench/raw-customers", raw_customers), *product_urlpatterns]
