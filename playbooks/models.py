"""Playbooks (ordered steps), their executions on customers, step runs and trigger rules."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Playbook(models.Model):
    """A named, ordered list of steps that answers a churn cause (table `playbooks`)."""

    name = models.TextField()
    description = models.TextField(blank=True, default="")
    steps = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Beyond the specification: a playbook can be switched off without losing its history.
    is_active = models.BooleanField(default=True)
    # The intervention type it stands for (analytics per type, recommendations) and the churn
    # causes (predictions/causes.py) it answers.
    intervention_type = models.TextField(blank=True, default="", db_default="")
    causes = models.JSONField(default=list, blank=True, db_default=[])
    # Share of enrolled customers left untouched at random, to measure what the playbook changes.
    holdout_share = models.FloatField(default=0.0, db_default=0.0)
    # Not again for the same customer within this many days (0 = only the one-running rule).
    reenrol_days = models.IntegerField(default=30, db_default=30)
    # Stop (completed, "exited") as soon as any of these conditions holds, e.g. risk fell back.
    exit_conditions = models.JSONField(default=list, blank=True, db_default=[])
    # Customer-facing e-mail waits in the review queue unless a manager turns this on.
    auto_send_customer_emails = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Send customer e-mails without review (managers only), up to the daily cap.",
    )

    class Meta:
        db_table = "playbooks"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="playbooks_name_unique"),
            models.CheckConstraint(
                condition=Q(holdout_share__gte=0, holdout_share__lte=1), name="playbooks_holdout_0_1"
            ),
            models.CheckConstraint(condition=Q(reenrol_days__gte=0), name="playbooks_reenrol_days_gte_0"),
        ]

    def __str__(self) -> str:
        return self.name


class TriggerRule(models.Model):
    """When a playbook enrols customers by itself (table `playbook_trigger_rules`)."""

    class Kind(models.TextChoices):
        RISK_ENTERS_HIGH = "risk_enters_high"
        HEALTH_DROP = "health_drop"  # params: points, days
        FAILED_PAYMENT = "failed_payment"  # params: days (look-back of the batch evaluation)
        CAUSE_APPEARS = "cause_appears"  # params: cause
        SEGMENT = "segment"  # only the segment filter
        RENEWAL_WITHIN = "renewal_within"  # params: days (the renewal date lies within them)

    playbook = models.ForeignKey(Playbook, on_delete=models.CASCADE, related_name="rules")
    kind = models.TextField(choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    # Optional filter on top of the trigger: {plan: [..], mrrGte, mrrLte, riskLevel: [..], ownerIds: [..]}.
    segment = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A manager's go-ahead for automatic enrolment, given on a dry-run summary. It holds only for
    # the rule as it was approved (`approved_fingerprint`): a new or changed rule waits for another.
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approval_summary = models.JSONField(default=dict, blank=True, db_default={})
    approved_fingerprint = models.TextField(blank=True, default="", db_default="")

    class Meta:
        db_table = "playbook_trigger_rules"
        ordering = ["playbook_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    kind__in=[
                        "risk_enters_high",
                        "health_drop",
                        "failed_payment",
                        "cause_appears",
                        "segment",
                        "renewal_within",
                    ]
                ),
                name="playbook_rule_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} → {self.playbook_id}"


# Days after an enrolment at which its outcome is read: the risk then, and churn within them.
OUTCOME_DAYS = 30


class PlaybookExecution(models.Model):
    """One run of a playbook on one customer (table `playbook_executions`)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        API = "api"
        BULK = "bulk"
        ADMIN = "admin"
        RULE = "rule"

    # Executions are history: a playbook that has run cannot be deleted, only deactivated.
    playbook = models.ForeignKey(Playbook, on_delete=models.PROTECT, related_name="executions")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="playbook_executions")
    status = models.TextField(choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # Beyond the specification: how it started, the durable-execution cursor, proof fields.
    trigger = models.TextField(choices=Trigger.choices, default=Trigger.MANUAL, db_default="manual")
    rule = models.ForeignKey(TriggerRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    is_holdout = models.BooleanField(default=False, db_default=False)
    current_step = models.TextField(blank=True, default="", db_default="", help_text="Key of the next step to run")
    # When the claimer should drive it next: a wait's due time, a retry's backoff, or the end of
    # a worker's lease (a killed worker's execution is picked up again then). Null when finished.
    next_run_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.TextField(blank=True, default="", db_default="")
    attempts = models.IntegerField(default=0, db_default=0, help_text="Attempts of the current step")
    error = models.TextField(blank=True, default="", db_default="")
    risk_at_start = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    # The proof's risk change: the customer's first churn probability OUTCOME_DAYS after the start,
    # written once by `execution_outcomes_record` after the scoring that produced it (ADR 0022).
    risk_after = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    intervention = models.ForeignKey(
        "interventions.Intervention", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "playbook_executions"
        ordering = ["-started_at", "-id"]
        constraints = [
            # One running execution per customer and playbook.
            models.UniqueConstraint(
                fields=["playbook", "customer"],
                condition=Q(status="running"),
                name="playbook_exec_one_running",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "completed", "failed", "cancelled"]),
                name="playbook_exec_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-started_at"], name="playbook_exec_cust_start_idx"),
            models.Index(fields=["status"], name="playbook_exec_status_idx"),
            # The claimer's scan: running executions by due time.
            models.Index(fields=["next_run_at"], condition=Q(status="running"), name="playbook_exec_due_idx"),
            models.Index(fields=["playbook", "-started_at"], name="playbook_exec_pb_start_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.playbook_id} on customer {self.customer_id} ({self.status})"


class PlaybookStepRun(models.Model):
    """One step of one execution (table `playbook_step_runs`); the unique key makes its effect once-only."""

    class Status(models.TextChoices):
        SENDING = "sending"  # an outside call is in flight (recorded before the call)
        WAITING = "waiting"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"

    execution = models.ForeignKey(PlaybookExecution, on_delete=models.CASCADE, related_name="step_runs")
    step_key = models.TextField()
    step_type = models.TextField()
    status = models.TextField(choices=Status.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True, help_text="For waits: when it is due")
    attempts = models.IntegerField(default=0)
    output = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "playbook_step_runs"
        ordering = ["execution_id", "started_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "step_key"], name="playbook_step_run_once"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}:{self.step_key} ({self.status})"


class EmailReview(models.Model):
    """A customer-facing e-mail of a playbook held for a person's review (table `playbook_email_reviews`).

    The execution waits at the e-mail step until the review is decided: approval sends it through
    the step machinery (same idempotency key), discarding skips the step."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DISCARDED = "discarded"

    class Reason(models.TextChoices):
        REVIEW = "review"  # the playbook does not auto-send
        DAILY_CAP = "daily_cap"  # it does, but today's cap is reached

    execution = models.ForeignKey(PlaybookExecution, on_delete=models.CASCADE, related_name="email_reviews")
    step_key = models.TextField()
    playbook = models.ForeignKey(Playbook, on_delete=models.CASCADE, related_name="email_reviews")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="email_reviews")
    to = models.TextField()
    subject = models.TextField()
    body = models.TextField()
    status = models.TextField(choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(choices=Reason.choices, default=Reason.REVIEW)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    is_edited = models.BooleanField(default=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    class Meta:
        db_table = "playbook_email_reviews"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "step_key"], name="playbook_email_review_once"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "approved", "discarded"]), name="playbook_email_review_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="playbook_review_queue_idx")]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to} ({self.status})"
