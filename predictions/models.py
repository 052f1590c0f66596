"""Churn predictions (one row per scoring) and the aggregated churn causes."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from customers.models import RiskLevel


class ChurnPrediction(models.Model):
    """One scoring of one customer (table `churn_predictions`); history is kept, never overwritten."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="predictions")
    churn_probability = models.DecimalField(max_digits=5, decimal_places=4)
    risk_level = models.TextField(choices=RiskLevel.choices)
    top_causes = models.JSONField(default=list, blank=True)
    prediction_date = models.DateTimeField()
    # Beyond the specification: which model produced it, and the health score at that time.
    model_version = models.TextField(blank=True, default="")
    health_score = models.IntegerField(null=True, blank=True)

    class Meta:
        db_table = "churn_predictions"
        ordering = ["-prediction_date", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(churn_probability__gte=0, churn_probability__lte=1),
                name="churn_predictions_probability_0_1",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-prediction_date"], name="churn_pred_cust_date_idx"),
            models.Index(fields=["prediction_date"], name="churn_pred_date_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.churn_probability} for customer {self.customer_id} on {self.prediction_date:%Y-%m-%d}"


class ChurnCause(models.Model):
    """A churn root cause aggregated over the book of business (table `churn_causes`)."""

    class Impact(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"

    class Category(models.TextChoices):
        PRODUCT = "product"
        BILLING = "billing"
        SUPPORT = "support"
        COMPETITION = "competition"
        OTHER = "other"

    cause = models.TextField()
    count = models.IntegerField(default=0)
    percent = models.IntegerField(default=0)
    impact = models.TextField(choices=Impact.choices, default=Impact.LOW)
    # Beyond the specification: what the app's causes view shows.
    category = models.TextField(choices=Category.choices, default=Category.OTHER)
    description = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "churn_causes"
        ordering = ["-count", "id"]
        constraints = [
            models.UniqueConstraint(fields=["cause"], name="churn_causes_cause_unique"),
            models.CheckConstraint(condition=Q(percent__gte=0, percent__lte=100), name="churn_causes_percent_0_100"),
            models.CheckConstraint(condition=Q(count__gte=0), name="churn_causes_count_gte_0"),
        ]

    def __str__(self) -> str:
        return self.cause


class PortfolioSnapshot(models.Model):
    """Daily totals per owning CSM, so dashboards compare today with a month ago in one row read.

    Written once a day for every owner (and for unassigned customers, owner NULL) by the scoring
    batch; the demo seeder writes a year of history. Managers see the sum over owners.
    """

    date = models.DateField()
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="portfolio_snapshots"
    )
    active_customers = models.IntegerField(default=0)
    at_risk_customers = models.IntegerField(default=0)
    risk_sum = models.FloatField(default=0, help_text="Sum of churn probabilities of active customers")
    mrr_sum = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    churned_customers = models.IntegerField(default=0, help_text="Customers who churned that day")

    class Meta:
        db_table = "portfolio_snapshots"
        ordering = ["-date"]
        constraints = [
            models.UniqueConstraint(fields=["date", "owner"], name="portfolio_snapshots_date_owner_unique"),
            models.UniqueConstraint(
                fields=["date"], condition=Q(owner__isnull=True), name="portfolio_snapshots_date_unassigned_unique"
            ),
        ]
        indexes = [models.Index(fields=["owner", "date"], name="portfolio_snap_owner_date_idx")]

    def __str__(self) -> str:
        return f"{self.date} owner={self.owner_id}"
