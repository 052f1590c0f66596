"""Churn predictions (one row per scoring) and the aggregated churn causes."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from customers.models import RiskLevel
from predictions.ml.rules import COMPONENTS, DEFAULT_WEIGHTS


class ChurnPrediction(models.Model):
    """One scoring of one customer (table `churn_predictions`); never overwritten. Past 90 days the
    history is thinned to one row per customer per week, then per month (services/history.py)."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="predictions")
    churn_probability = models.DecimalField(max_digits=5, decimal_places=4)
    risk_level = models.TextField(choices=RiskLevel.choices)
    top_causes = models.JSONField(default=list, blank=True)
    prediction_date = models.DateTimeField()
    # Beyond the specification: which model produced it, and the health score at that time.
    model_version = models.TextField(blank=True, default="")
    health_score = models.IntegerField(null=True, blank=True)
    health_components = models.JSONField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # What a real-time score was computed from (scoring.inputs_digest): the same inputs are not
    # scored and stored again. Empty for batch rows. A database default, as the batch's COPY omits it.
    inputs_digest = models.CharField(max_length=32, blank=True, db_default="")
    # The scoring run that wrote it: a run writes at most one row per customer (idempotent).
    run = models.ForeignKey(
        "predictions.PredictionRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="predictions"
    )

    class Meta:
        db_table = "churn_predictions"
        ordering = ["-prediction_date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "customer"], name="churn_predictions_one_per_run"),
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
    batch; the demo seeder writes a year of history. Managers see the sum over owners. Rows the
    batch counted (`taken_at` set) also hold the team home's and a manager's Reports figures, so
    those pages read 40 small rows instead of scanning the customers table (see
    `portfolio_snapshot_take`).
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
    # Counted from the customers by `portfolio_snapshot_take`; rows redrawn from history
    # (backfill, demo history) leave them empty and `taken_at` NULL. Database defaults too: the
    # demo writer COPYs history rows without these columns.
    medium_risk_customers = models.IntegerField(default=0, db_default=0, help_text="Active customers at medium risk")
    mrr_at_risk = models.DecimalField(
        "MRR at risk",
        max_digits=14,
        decimal_places=2,
        default=0,
        db_default=0,
        help_text="MRR of active customers at medium or high risk",
    )
    riskiest_customer_ids = models.JSONField(
        default=list,
        null=True,
        blank=True,
        help_text="The owner's riskiest active customers when counted, riskiest first",
    )
    # What a manager's Reports page sums: per plan, the owner's active customers per 10-point
    # risk bin and revenue at risk per account size (`customers.selectors.risk_revenue_groups`,
    # decimals as strings). NULL on rows counted before the column existed.
    report_groups = models.JSONField(
        null=True,
        blank=True,
        help_text="Per plan: active customers per 10-point risk bin and revenue at risk per account size",
    )
    taken_at = models.DateTimeField(null=True, blank=True, help_text="When the figures were counted from the customers")

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


class ModelVersion(models.Model):
    """The model registry: one trained (or rules-baseline) churn model and how it performed.

    A retrained model becomes champion only if it beats the champion on the same validation
    window; otherwise it stays a candidate and `status_reason` says why.
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        CHAMPION = "champion"
        RETIRED = "retired"

    class Kind(models.TextChoices):
        XGBOOST = "xgboost"
        LOGISTIC = "logistic"  # chosen over XGBoost when it ranks the held-out block better
        RULES = "rules"

    version = models.TextField()
    kind = models.TextField(choices=Kind.choices)
    status = models.TextField(choices=Status.choices, default=Status.CANDIDATE)
    status_reason = models.TextField(blank=True, default="")
    trained_at = models.DateTimeField()
    as_of = models.DateTimeField(help_text="The latest fact the model could see")
    feature_names = models.JSONField(default=list)
    params = models.JSONField(default=dict)
    training_window = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    baseline_metrics = models.JSONField(default=dict)
    importance = models.JSONField(default=dict, help_text="Mean |SHAP| per feature, normalised to 1")
    artifact = models.BinaryField(null=True, blank=True, help_text="Serialized booster and calibrator")

    class Meta:
        db_table = "model_versions"
        ordering = ["-trained_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["version"], name="model_versions_version_unique"),
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="champion"), name="model_versions_one_champion"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.status})"


class ModelVersionChange(models.Model):
    """A change of champion: who made which version champion, replacing which, when and why.

    Written by every promotion (training's automatic ones with `changed_by` empty) and by a
    manager's explicit promote or roll back; never edited. The versions it names are kept (a
    version that was ever champion cannot be deleted while its history exists).
    """

    class Action(models.TextChoices):
        PROMOTED = "promoted", "promoted"
        ROLLED_BACK = "rolled_back", "rolled back"

    action = models.TextField(choices=Action.choices)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="champion_changes")
    previous = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="replaced_by_changes"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="model_version_changes",
        help_text="Empty: training promoted it by its own rule",
    )
    changed_at = models.DateTimeField()
    reason = models.TextField()

    class Meta:
        db_table = "model_version_changes"
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["version", "-changed_at"], name="model_change_version_idx")]

    def __str__(self) -> str:
        return f"{self.version_id} {self.action} at {self.changed_at:%Y-%m-%d %H:%M}"


# The run key of the whole-book re-score after a person changed the champion (+ the change's id).
MODEL_CHANGE_RUN_PREFIX = "model-change:"


class PredictionRun(models.Model):
    """One scoring run (the daily batch, or a real-time re-score of a few customers)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        BATCH = "batch"
        EVENT = "event"
        MANUAL = "manual"

    run_key = models.TextField(help_text="Idempotency key: a batch for a day runs once")
    trigger = models.TextField(choices=Trigger.choices, default=Trigger.BATCH)
    status = models.TextField(choices=Status.choices, default=Status.RUNNING)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="runs")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    customers_scored = models.IntegerField(default=0)
    risk_rises = models.IntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True)
    # Population stability index per feature: this run's population against the training data.
    drift = models.JSONField(default=dict, blank=True)
    # A retrain this run's major drift enqueued (at most one a day), and what it produced.
    retrain_scheduled_at = models.DateTimeField(null=True, blank=True)
    retrain_finished_at = models.DateTimeField(null=True, blank=True)
    retrain_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="drift_retrain_runs"
    )
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "prediction_runs"
        ordering = ["-started_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run_key"], name="prediction_runs_run_key_unique")]

    def __str__(self) -> str:
        return f"{self.run_key} ({self.status})"


class HealthWeights(models.Model):
    """The health score's component weights, editable in the admin (one row; defaults until saved).

    The score is the weighted mean of the components, so only the ratios matter; the next
    scoring run (batch or real time) uses the new weights and stores them in each breakdown.
    """

    usage = models.FloatField(default=DEFAULT_WEIGHTS["usage"], validators=[MinValueValidator(0)])
    engagement = models.FloatField(default=DEFAULT_WEIGHTS["engagement"], validators=[MinValueValidator(0)])
    support = models.FloatField(default=DEFAULT_WEIGHTS["support"], validators=[MinValueValidator(0)])
    nps = models.FloatField(default=DEFAULT_WEIGHTS["nps"], validators=[MinValueValidator(0)])
    billing = models.FloatField(default=DEFAULT_WEIGHTS["billing"], validators=[MinValueValidator(0)])
    tenure = models.FloatField(default=DEFAULT_WEIGHTS["tenure"], validators=[MinValueValidator(0)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "health_score_weights"
        verbose_name_plural = "health score weights"
        constraints = [
            models.CheckConstraint(
                condition=Q(usage__gte=0, engagement__gte=0, support__gte=0, nps__gte=0, billing__gte=0, tenure__gte=0),
                name="health_weights_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(usage__gt=0)
                | Q(engagement__gt=0)
                | Q(support__gt=0)
                | Q(nps__gt=0)
                | Q(billing__gt=0)
                | Q(tenure__gt=0),
                name="health_weights_some_positive",
            ),
        ]

    def __str__(self) -> str:
        return "Health score weights"

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in COMPONENTS}
