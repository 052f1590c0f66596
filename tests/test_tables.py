"""The specification's nine tables (../shared/seed/churnshield-backend-spec.md, section 1): table
and column names exactly as specified, with the specified types, checked against the real
database; and the named check constraints that guard the ranges the specification states."""

from decimal import Decimal

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from customers.models import Customer, NpsResponse

SERIAL, INT, FK, TEXT, DECIMAL, TIMESTAMP, JSONB, BOOLEAN = (
    "SERIAL PK",
    "INTEGER",
    "INTEGER FK",
    "TEXT",
    "DECIMAL",
    "TIMESTAMP",
    "JSONB",
    "BOOLEAN",
)
# Column → type, copied from the specification.
SPEC = {
    "customers": {
        "id": SERIAL, "name": TEXT, "email": TEXT, "company": TEXT, "plan": TEXT, "mrr": DECIMAL,
        "signup_date": TIMESTAMP, "last_login": TIMESTAMP, "health_score": INT, "churn_risk": DECIMAL,
        "nps_score": INT, "support_tickets": INT, "feature_usage": JSONB, "is_active": BOOLEAN,
    },
    "interventions": {
        "id": SERIAL, "customer_id": FK, "type": TEXT, "status": TEXT, "priority": TEXT, "assigned_csm": TEXT,
        "description": TEXT, "next_action": TEXT, "due_date": TIMESTAMP, "created_at": TIMESTAMP,
        "completed_at": TIMESTAMP, "notes": TEXT,
    },
    "integrations": {
        "id": SERIAL, "name": TEXT, "type": TEXT, "status": TEXT, "last_sync_at": TIMESTAMP, "config": JSONB,
    },
    "alerts": {"id": SERIAL, "message": TEXT, "read": BOOLEAN, "created_at": TIMESTAMP},
    "churn_predictions": {
        "id": SERIAL, "customer_id": FK, "churn_probability": DECIMAL, "risk_level": TEXT, "top_causes": JSONB,
        "prediction_date": TIMESTAMP,
    },
    "churn_causes": {"id": SERIAL, "cause": TEXT, "count": INT, "percent": INT, "impact": TEXT},
    "playbooks": {"id": SERIAL, "name": TEXT, "description": TEXT, "steps": JSONB, "created_at": TIMESTAMP},
    "playbook_executions": {
        "id": SERIAL, "playbook_id": FK, "customer_id": FK, "status": TEXT, "started_at": TIMESTAMP,
        "completed_at": TIMESTAMP, "result": JSONB,
    },
    "user_sessions": {
        "id": SERIAL, "customer_id": FK, "started_at": TIMESTAMP, "ended_at": TIMESTAMP, "pages_viewed": INT,
        "actions": JSONB,
    },
}  # fmt: skip
# The spec's type → the Django field types that implement it (TIMESTAMP: aware datetimes, USE_TZ).
FIELD_TYPES = {
    SERIAL: {"AutoField"},
    INT: {"IntegerField", "PositiveIntegerField", "PositiveSmallIntegerField", "SmallIntegerField"},
    FK: {"ForeignKey"},
    TEXT: {"TextField", "CharField", "EmailField"},
    DECIMAL: {"DecimalField"},
    TIMESTAMP: {"DateTimeField"},
    JSONB: {"JSONField"},
    BOOLEAN: {"BooleanField"},
}


def model_for(table: str):
    return next(model for model in apps.get_models() if model._meta.db_table == table)


@pytest.mark.parametrize("table", sorted(SPEC))
def test_spec_table_has_its_columns_with_their_types(table):
    model = model_for(table)
    columns = {field.column: field for field in model._meta.concrete_fields}
    for column, spec_type in SPEC[table].items():
        assert column in columns, f"{table}.{column} missing"
        assert columns[column].get_internal_type() in FIELD_TYPES[spec_type], (table, column)


@pytest.mark.django_db
@pytest.mark.parametrize("table", sorted(SPEC))
def test_spec_columns_exist_in_the_database(table):
    with connection.cursor() as cursor:
        described = {column.name for column in connection.introspection.get_table_description(cursor, table)}
    assert set(SPEC[table]) <= described


@pytest.mark.django_db
def test_jsonb_on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("JSONB is PostgreSQL's type; SQLite stores JSON as text")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'jsonb'"
            " AND table_name = ANY(%s)",
            [list(SPEC)],
        )
        jsonb = set(cursor.fetchall())
    assert {(t, c) for t, cols in SPEC.items() for c, kind in cols.items() if kind == JSONB} <= jsonb


def _customer(**fields) -> Customer:
    values = {
        "name": "Range",
        "email": f"range{Customer.objects.count()}@example.com",
        "company": "C",
        "plan": "Pro",
        "mrr": Decimal(10),
        "signup_date": timezone.now(),
    }
    return Customer(**(values | fields))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"health_score": 101}, "customers_health_score_0_100"),
        ({"health_score": -1}, "customers_health_score_0_100"),
        ({"churn_risk": Decimal("1.0001")}, "customers_churn_risk_0_1"),
        ({"churn_risk": Decimal("-0.0001")}, "customers_churn_risk_0_1"),
        ({"nps_score": 11}, "customers_nps_score_0_10"),
        ({"nps_score": -1}, "customers_nps_score_0_10"),
    ],
)
def test_the_database_refuses_out_of_range_scores(fields, constraint):
    assert constraint in {c.name for c in Customer._meta.constraints}
    with pytest.raises(IntegrityError), transaction.atomic():
        _customer(**fields).save()
    assert Customer.objects.count() == 0
    _customer(health_score=100, churn_risk=Decimal(1), nps_score=10).save()  # the bounds themselves are fine


@pytest.mark.django_db
def test_nps_answers_are_0_to_10():
    customer = _customer()
    customer.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        NpsResponse.objects.create(customer=customer, score=11, responded_at=timezone.now())
