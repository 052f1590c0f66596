"""Small helpers shared by tests."""

import datetime as dt

from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from kombu import pools
from rest_framework.test import APIClient

from alerts.models import Alert
from core.auth.tokens import issue_tokens
from interventions.models import Intervention
from predictions.models import ChurnPrediction


def make_intervention(customer, **fields) -> Intervention:
    defaults = {"type": "Executive Check-in", "status": "active", "priority": "medium", "assigned_csm": "Sam"}
    defaults.update(fields)
    return Intervention.objects.create(customer=customer, **defaults)


def make_alert(customer=None, **fields) -> Alert:
    defaults = {"title": "High churn risk", "message": "Risk rose", "severity": "high"}
    defaults.update(fields)
    return Alert.objects.create(customer=customer, **defaults)


def make_prediction(customer, probability="0.8100", days_ago=0, causes=None) -> ChurnPrediction:
    return ChurnPrediction.objects.create(
        customer=customer,
        churn_probability=probability,
        risk_level="high" if float(probability) >= 0.8 else "medium" if float(probability) >= 0.5 else "low",
        top_causes=causes
        if causes is not None
        else [{"cause": "Low engagement", "factor": "Days since last login", "impact": 0.3, "value": "41 days"}],
        prediction_date=timezone.now() - dt.timedelta(days=days_ago),
        model_version="test",
    )


def schema_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation in the OpenAPI schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item]


def reset_broker_pools() -> None:
    """Close kombu's connection and producer pools and forget them (kombu keys them by broker URL,
    and a closed pool refuses every later acquire); Celery opens new ones on the next send."""
    from churnshield.celery import app

    pools.reset()
    app._after_fork()  # drops the app's cached connection and producer pools


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_tokens(user)['access']}")
    return client
