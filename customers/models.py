"""Customers and the time-stamped facts about them (sessions, tickets, NPS, billing).

Every fact carries the instant it happened, so features can be computed *as of* any date.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class RiskLevel(models.TextChoices):
    """Bands of churn probability (thresholds in settings: RISK_HIGH_THRESHOLD, RISK_MEDIUM_THRESHOLD)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ContractSource(models.TextChoices):
    """Where a customer's renewal date and contract value came from."""

    SUBSCRIPTIONS = "subscriptions", "Subscription history"
    MANUAL = "manual", "Edited by hand"


class Customer(models.Model):
    """A paying account in the book of business (table `customers` from the specification)."""

    name = models.TextField()
    email = models.TextField()
    company = models.TextField(blank=True, default="")
    plan = models.TextField(blank=True, default="")
    mrr = models.DecimalField("MRR", max_digits=12, decimal_places=2, default=0)
    signup_date = models.DateTimeField()
    last_login = models.DateTimeField(null=True, blank=True)
    health_score = models.IntegerField(default=50)
    churn_risk = models.DecimalField(max_digits=5, decimal_places=4, default=0)
    nps_score = models.IntegerField("NPS score", null=True, blank=True)
    support_tickets = models.IntegerField(default=0, help_text="Open support tickets")
    feature_usage = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    # Beyond the specification: who owns the account, when it churned (the training label),
    # the id in the system it was synced from, and bookkeeping timestamps.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        # A departing CSM leaves their accounts unassigned for a manager to hand over.
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_customers",
        db_index=False,  # customers_owner_active_idx (owner, is_active) serves owner lookups
    )
    churned_at = models.DateTimeField(null=True, blank=True)
    external_id = models.TextField(null=True, blank=True)
    # The contract: derived from subscription versions, or set by hand (a manual value stands until
    # a subscription fact newer than the edit arrives). Written only by customers.contracts.
    renewal_date = models.DateField(null=True, blank=True, help_text="End of the current contract period")
    contract_value = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Annual recurring revenue (ARR)"
    )
    bill_period_months = models.IntegerField(null=True, blank=True)
    # A database default too: the demo writer and bulk loaders COPY rows without this column.
    contract_source = models.TextField(choices=ContractSource.choices, blank=True, default="", db_default="")
    contract_set_at = models.DateTimeField(
        null=True, blank=True, help_text="When the contract was edited by hand, or the newest fact it came from"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "customers"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(health_score__gte=0, health_score__lte=100), name="customers_health_score_0_100"
            ),
            models.CheckConstraint(condition=Q(churn_risk__gte=0, churn_risk__lte=1), name="customers_churn_risk_0_1"),
            models.CheckConstraint(
                condition=Q(nps_score__isnull=True) | Q(nps_score__gte=0, nps_score__lte=10),
                name="customers_nps_score_0_10",
            ),
            models.CheckConstraint(condition=Q(support_tickets__gte=0), name="customers_support_tickets_gte_0"),
            models.CheckConstraint(condition=Q(mrr__gte=0), name="customers_mrr_gte_0"),
            # The CSV import and the syncs match customers by e-mail, whatever its case.
            models.UniqueConstraint(Lower("email"), name="customers_email_ci_unique"),
            models.UniqueConstraint(fields=["external_id"], name="customers_external_id_unique"),
        ]
        # No index on churn_risk or health_score, on purpose: the scoring batch rewrites them for
        # every customer, and with no index on the columns it changes (and free space left in
        # each page, see migration 0003) PostgreSQL updates the rows in place (HOT) instead of
        # adding an entry to every index per row — 4-5x faster. Filtering or sorting a book by
        # risk scans the table, which takes milliseconds at 100,000 customers.
        indexes = [
            # Both carry the customer's id or owner so that the workspace's counts (a CSM's open work
            # and alerts, the team's work per CSM) join customers by index only, never reading the
            # wide rows; neither holds a column scoring rewrites, so its updates stay HOT.
            models.Index(fields=["owner", "is_active"], include=["id"], name="customers_owner_active_idx"),
            models.Index(fields=["id"], include=["owner"], name="customers_id_owner_idx"),
            models.Index(fields=["signup_date"], name="customers_signup_date_idx"),
            # The plan filter's choices, by loose index scan (`customers.selectors.customer_plans`):
            # the book's plans, and a CSM's. Scoring never changes the plan, so updates stay HOT.
            models.Index(fields=["plan"], name="customers_plan_idx"),
            models.Index(fields=["owner", "plan"], name="customers_owner_plan_idx"),
            models.Index(fields=["churned_at"], name="customers_churned_at_idx"),
            # The playbook proof joins tens of thousands of executions to their customers for the
            # churn date and MRR: by index only, instead of reading every wide row. The churned
            # customers' alone (a fifth of the book) for the churn counts (`_churn_counts`), every
            # customer's with the MRR for the full proof (`_arm_totals`). Scoring never changes
            # these columns, so its updates stay HOT.
            models.Index(
                fields=["id"],
                include=["churned_at"],
                condition=models.Q(churned_at__isnull=False),
                name="customers_churned_id_idx",
            ),
            models.Index(fields=["id"], include=["mrr", "churned_at"], name="customers_id_mrr_idx"),
            # Scoring never changes it, so its updates stay HOT (see above).
            models.Index(fields=["renewal_date"], name="customers_renewal_date_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.company})" if self.company else self.name


class UserSession(models.Model):
    """One product session of a customer's users (table `user_sessions`)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="sessions")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    pages_viewed = models.IntegerField(default=0)
    actions = models.JSONField(default=list, blank=True)
    external_id = models.TextField(null=True, blank=True)

    class Meta:
        db_table = "user_sessions"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(pages_viewed__gte=0), name="user_sessions_pages_viewed_gte_0"),
            models.UniqueConstraint(fields=["external_id"], name="user_sessions_external_id_unique"),
        ]
        indexes = [models.Index(fields=["customer", "-started_at"], name="user_sessions_cust_start_idx")]

    def __str__(self) -> str:
        return f"Session {self.pk} of customer {self.customer_id}"


class SupportTicket(models.Model):
    """A support ticket; `customers.support_tickets` is the count of the open ones."""

    class Status(models.TextChoices):
        OPEN = "open"
        PENDING = "pending"
        SOLVED = "solved"
        CLOSED = "closed"

    class Priority(models.TextChoices):
        LOW = "low"
        NORMAL = "normal"
        HIGH = "high"
        URGENT = "urgent"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tickets")
    subject = models.TextField()
    status = models.TextField(choices=Status.choices, default=Status.OPEN)
    priority = models.TextField(choices=Priority.choices, default=Priority.NORMAL)
    opened_at = models.DateTimeField()
    solved_at = models.DateTimeField(null=True, blank=True)
    external_id = models.TextField(null=True, blank=True)

    class Meta:
        db_table = "support_tickets"
        ordering = ["-opened_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["external_id"], name="support_tickets_external_id_unique")]
        indexes = [models.Index(fields=["customer", "-opened_at"], name="support_tickets_cust_open_idx")]

    def __str__(self) -> str:
        return self.subject


class NpsResponse(models.Model):
    """One NPS survey answer; `customers.nps_score` is the latest."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="nps_responses")
    score = models.IntegerField()
    comment = models.TextField(blank=True, default="")
    responded_at = models.DateTimeField()
    external_id = models.TextField(null=True, blank=True)

    class Meta:
        db_table = "nps_responses"
        verbose_name = "NPS response"
        ordering = ["-responded_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0, score__lte=10), name="nps_responses_score_0_10"),
            models.UniqueConstraint(fields=["external_id"], name="nps_responses_external_id_unique"),
        ]
        indexes = [models.Index(fields=["customer", "-responded_at"], name="nps_responses_cust_resp_idx")]

    def __str__(self) -> str:
        return f"NPS {self.score} from customer {self.customer_id}"


class BillingEvent(models.Model):
    """A payment or subscription change; the history behind `customers.mrr` and `churned_at`."""

    class Kind(models.TextChoices):
        PAYMENT_SUCCEEDED = "payment_succeeded"
        PAYMENT_FAILED = "payment_failed"
        SUBSCRIPTION_CHANGED = "subscription_changed"
        SUBSCRIPTION_CANCELLED = "subscription_cancelled"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="billing_events")
    kind = models.TextField(choices=Kind.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    mrr_after = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    plan_after = models.TextField(blank=True, default="")
    occurred_at = models.DateTimeField()
    external_id = models.TextField(null=True, blank=True)

    class Meta:
        db_table = "billing_events"
        ordering = ["-occurred_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["external_id"], name="billing_events_external_id_unique")]
        indexes = [models.Index(fields=["customer", "-occurred_at"], name="billing_events_cust_occ_idx")]

    def __str__(self) -> str:
        return f"{self.kind} for customer {self.customer_id}"


class Subscription(models.Model):
    """One version of a subscription: a period at a plan and price (every version kept).

    Written by the history import; the billing rows features read (`subscription_changed` at each
    start, `subscription_cancelled` when the customer left) are derived from these.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        TRIALING = "trialing"
        PAST_DUE = "past_due"
        CANCELED = "canceled", "Canceled (the customer left)"
        ENDED = "ended", "Ended (expired, renewed or changed plan)"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="subscriptions")
    external_id = models.TextField(help_text="The subscription's id in the source; one row per version")
    plan = models.TextField(blank=True, default="")
    mrr = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Empty while the period is open")
    status = models.TextField(choices=Status.choices)
    bill_period_months = models.IntegerField(null=True, blank=True)
    discount = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, help_text="As the source gave it (not interpreted)"
    )

    class Meta:
        db_table = "subscriptions"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["external_id", "started_at"], name="subscriptions_version_unique"),
            models.CheckConstraint(condition=Q(mrr__gte=0), name="subscriptions_mrr_gte_0"),
        ]
        indexes = [models.Index(fields=["customer", "-started_at"], name="subscriptions_cust_start_idx")]

    def __str__(self) -> str:
        return f"Subscription {self.external_id} from {self.started_at:%Y-%m-%d}"


class Renewal(Customer):
    """A customer seen through their contract: the renewals list of the admin (no table of its own)."""

    class Meta:
        proxy = True
        ordering = ["renewal_date", "id"]
        verbose_name = "renewal"
        verbose_name_plural = "renewals"


class RenewalCount(models.Model):
    """One owner's renewal and revenue figures as the daily run last counted them (the renewals
    list's totals, the retained-revenue forecast, revenue retention), so the renewals pages sum a
    few dozen rows instead of reading every customer and subscription version
    (`customers.services.renewal_count_take`). Only the latest count is kept."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="renewal_counts"
    )
    counted_at = models.DateTimeField(help_text="When the figures were counted from the customers")
    counted_on = models.DateField(help_text="The day the forecast's and retention's months are counted from")
    active_customers = models.IntegerField(default=0)
    mrr = models.DecimalField("MRR", max_digits=16, decimal_places=2, default=0)
    arr = models.DecimalField("ARR", max_digits=18, decimal_places=2, default=0)
    revenue_at_risk = models.DecimalField(
        max_digits=22, decimal_places=6, default=0, help_text="Sum of MRR x churn probability, unrounded"
    )
    # Per month from `counted_on`'s: customers renewing, MRR renewing, expected retained MRR and
    # its variance (exact decimals as strings, so that owners add up exactly).
    forecast = models.JSONField(default=list)
    # Per complete month before `counted_on`'s, oldest first: start MRR, churned, contraction and
    # expansion in whole cents.
    retention = models.JSONField(default=list)

    class Meta:
        db_table = "renewal_counts"
        constraints = [
            models.UniqueConstraint(fields=["owner"], name="renewal_counts_owner_unique"),
            models.UniqueConstraint(
                fields=["counted_on"], condition=Q(owner__isnull=True), name="renewal_counts_unassigned_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"Renewal count of owner={self.owner_id} at {self.counted_at:%Y-%m-%d %H:%M}"


class ImportJob(models.Model):
    """A history import submitted through the API or the admin and run by a worker.

    The uploaded files are kept in the database (`ImportChunk`), not on a disk, so any worker host
    can run the job; they are deleted once the import itself (not a dry run) has run.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded", "Succeeded (every file read)"
        FAILED = "failed", "Failed (a file, or the job, did not import)"

    class OnError(models.TextChoices):
        REJECT = "reject", "Reject a file with a bad row"
        SKIP = "skip", "Skip bad rows, import the good ones"

    status = models.TextField(choices=Status.choices, default=Status.QUEUED)
    dry_run = models.BooleanField(default=True, help_text="Validate and count, write nothing")
    on_error = models.TextField(choices=OnError.choices, default=OnError.REJECT)
    timezone = models.TextField(default="UTC", help_text="Zone of naive timestamps")
    mapping = models.JSONField(null=True, blank=True, help_text="Their column -> ours, per kind")
    files = models.JSONField(default=list, help_text="[{name, kind, size}] in upload order")
    progress = models.JSONField(default=list, help_text="Per file: bytes and rows read, rows estimate, state")
    result = models.JSONField(null=True, blank=True, help_text="Per file and per kind counts of the last run")
    dry_run_result = models.JSONField(null=True, blank=True, help_text="The dry run's counts, once confirmed")
    errors = models.JSONField(default=list, help_text="[[file, line, column, message]] of the last run")
    error = models.TextField(blank=True, default="", help_text="Why the job failed as a whole")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="import_jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "import_jobs"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Import {self.pk} ({'dry run, ' if self.dry_run else ''}{self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class ImportChunk(models.Model):
    """A piece of an uploaded import file, in order (a file of any size in bounded memory)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    file = models.IntegerField(help_text="Index in the job's files")
    index = models.IntegerField()
    data = models.BinaryField()

    class Meta:
        db_table = "import_chunks"
        ordering = ["job", "file", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "file", "index"], name="import_chunks_unique"),
        ]

    def __str__(self) -> str:
        return f"Chunk {self.index} of file {self.file} of import {self.job_id}"
