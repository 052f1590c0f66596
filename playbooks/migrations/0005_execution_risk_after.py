import datetime as dt

from django.db import migrations, models
from django.db.models import DateTimeField, Exists, ExpressionWrapper, OuterRef, Subquery
from django.utils import timezone

OUTCOME_DAYS = 30  # playbooks.models.OUTCOME_DAYS when this was written


def record_matured_outcomes(apps, schema_editor):
    """What `playbooks.services.execution_outcomes_record` would have recorded so far, so that the
    proof keeps its risk changes from the first deploy on (one UPDATE)."""
    execution = apps.get_model("playbooks", "PlaybookExecution")
    prediction = apps.get_model("predictions", "ChurnPrediction")
    later = prediction.objects.filter(
        customer=OuterRef("customer_id"),
        prediction_date__gte=ExpressionWrapper(
            OuterRef("started_at") + dt.timedelta(days=OUTCOME_DAYS), output_field=DateTimeField()
        ),
    ).order_by("prediction_date", "id")
    execution.objects.filter(
        risk_after__isnull=True, started_at__lte=timezone.now() - dt.timedelta(days=OUTCOME_DAYS)
    ).filter(Exists(later)).update(risk_after=Subquery(later.values("churn_probability")[:1]))


class Migration(migrations.Migration):
    dependencies = [
        ("playbooks", "0004_safe_automation"),
        ("predictions", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="playbookexecution",
            name="risk_after",
            field=models.DecimalField(blank=True, decimal_places=4, max_digits=5, null=True),
        ),
        migrations.RunPython(record_matured_outcomes, migrations.RunPython.noop, elidable=True),
    ]
