"""The product's routes plus the baselines: the same customer rows straight from a cursor, and the
real-time predict's database work without the model (bench settings only, never production)."""

import uuid

import orjson
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from psycopg.types.json import Jsonb

from churnshield.urls import urlpatterns as product_urlpatterns
from predictions.data import _ONE_POSTGRES as ONE_CUSTOMER_SQL
from predictions.data import customer_facts_read
from predictions.services.scoring import _WRITE_ONE_POSTGRES as WRITE_ONE_SQL

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


# A prediction's stored shape (three causes, six components), so the write moves as many bytes.
_CAUSES = [
    {
        "cause": "Low engagement",
        "factor": "Days since last login",
        "feature": "days_since_last_session",
        "impact": 0.41,
        "direction": "increases",
        "category": "product",
        "value": "Days since last login: 23 days",
    },
] * 3
_COMPONENTS = {"usage": 50, "engagement": 40, "support": 90, "nps": 50, "billing": 100, "tenure": 70}


@csrf_exempt
def reference_predict(request: HttpRequest) -> HttpResponse:
    """POST {customerId}: what `POST /api/v1/churn/predict` does in the database, without auth,
    DRF, frames or a model: the same read of the customer's stored row and settings, the same read
    of its facts (`?actions=0`: without the session actions, as for a model that counts none),
    then the same one-statement write of a run and a prediction (the stored scores again, so the
    customer's row is left as it is, as a re-score with an unchanged result leaves it)."""
    customer_id = int(orjson.loads(request.body)["customerId"])
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(ONE_CUSTOMER_SQL, {"customer_id": customer_id})
        risk, health, _name, _owner, champion, *_ = cursor.fetchone()
        statement, params = customer_facts_read(customer_id, now, actions=request.GET.get("actions", "1") == "1")
        cursor.execute(statement, params)
        cursor.fetchone()
        cursor.execute(
            WRITE_ONE_SQL,
            {
                "run_key": uuid.uuid4().hex,
                "version_id": int(champion[0]),
                "now": now,
                "rises": 0,
                "customer_id": customer_id,
                "risk": risk,
                "level": "medium",
                "causes": Jsonb(_CAUSES),
                "version": champion[1],
                "score": health,
                "components": Jsonb(_COMPONENTS),
                "confidence": 0.5,
                "digest": "",
            },
        )
        prediction_id, _run_id = cursor.fetchone()
    return HttpResponse(
        orjson.dumps({"customerId": customer_id, "predictionId": prediction_id}), content_type="application/json"
    )


urlpatterns = [
    path("bench/raw-customers", raw_customers),
    path("bench/reference-predict", reference_predict),
    *product_urlpatterns,
]
