"""The customer API's response bodies, built from what the selectors read.

The list is the hot path: `customer_row_body` renders a `customers.selectors.customer_values` row
with no per-row query and no serializer (ADR 0003); `customers.api.serializers` documents the same
shapes in the OpenAPI schema, and a test keeps the two equal."""

from decimal import Decimal
from typing import Any

import orjson

from customers.models import Customer, ImportJob
from customers.selectors import customer_values, iso, risk_level, risk_thresholds

_HUNDRED = Decimal(100)
_CENTS = Decimal("0.01")


def customer_row_body(row: dict, thresholds: tuple[float, float] | None = None) -> dict:
    """The contract's customer object from a `customer_values` row."""
    risk = row["churn_risk"]
    full_name = f"{row['owner__first_name']} {row['owner__last_name']}".strip()
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "company": row["company"],
        "plan": row["plan"],
        "mrr": str(row["mrr"].quantize(_CENTS)),
        "signupDate": row["signup_date_iso"],
        "lastLogin": row["last_login_iso"],
        "healthScore": row["health_score"],
        "churnRisk": str((risk * _HUNDRED).quantize(_CENTS)),
        "churnProbability": float(risk),
        "riskLevel": risk_level(float(risk), thresholds),
        "npsScore": row["nps_score"],
        "supportTickets": row["support_tickets"],
        # Already JSON: orjson embeds the text without a parse/serialise round trip.
        "featureUsage": orjson.Fragment(row["feature_usage_json"]),
        "isActive": row["is_active"],
        "churnedAt": row["churned_at_iso"],
        "ownerId": row["owner_id"],
        "ownerName": full_name or row["owner__username"],
    }


def customer_rows_body(rows: Any) -> list[dict]:
    """A page of `customer_values` rows; the risk bands are read once for the page."""
    thresholds = risk_thresholds()
    return [customer_row_body(row, thresholds) for row in rows]


def customer_body(customer: Customer) -> dict:
    """One customer in the list's shape (read again as a `customer_values` row, so the detail and
    the list render every field the same way)."""
    return customer_rows_body(customer_values(Customer.objects.filter(pk=customer.pk)))[0]


def session_row_body(row: dict) -> dict:
    """A session from a `customers.selectors.SESSION_VALUES` row."""
    return {
        "id": row["id"],
        "customerId": row["customer_id"],
        "startedAt": iso(row["started_at"]),
        "endedAt": iso(row["ended_at"]),
        "pagesViewed": row["pages_viewed"],
        "actions": row["actions"],
    }


def timeline_event_body(event: dict) -> dict:
    return {**event, "at": iso(event["at"])}


def import_job_body(job: ImportJob) -> dict:
    """An import job (documented by ImportJobOutputSerializer, kept equal by a test)."""
    return {
        "id": job.pk,
        "status": job.status,
        "dryRun": job.dry_run,
        "onError": job.on_error,
        "timezone": job.timezone,
        "files": job.files,
        "progress": job.progress,
        "result": job.result,
        "dryRunResult": job.dry_run_result,
        "errorCount": len(job.errors),
        "errorsUrl": f"/api/imports/{job.pk}/errors.csv",
        "error": job.error,
        "createdBy": job.created_by.username if job.created_by else None,
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
    }
