"""Customer API shapes. Output is rendered by `customers.api.renderers` (lean hot path); these
serializers document it in the OpenAPI schema, and a test keeps the two equal."""

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers

from core.api import fields as strict
from customers.models import RiskLevel
from customers.services import MAX_IMPORT_CHARS


class CustomerOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField()
    company = serializers.CharField()
    plan = serializers.CharField()
    mrr = serializers.CharField(help_text='Monthly recurring revenue, a decimal string ("547.49").')
    signupDate = serializers.DateTimeField()
    lastLogin = serializers.DateTimeField(allow_null=True)
    healthScore = serializers.IntegerField(min_value=0, max_value=100)
    churnRisk = serializers.CharField(help_text='Churn probability as a percent string with two decimals ("73.25").')
    churnProbability = serializers.FloatField(min_value=0, max_value=1)
    riskLevel = serializers.ChoiceField(choices=RiskLevel.choices)
    npsScore = serializers.IntegerField(allow_null=True)
    supportTickets = serializers.IntegerField()
    featureUsage = serializers.DictField()
    isActive = serializers.BooleanField()
    churnedAt = serializers.DateTimeField(allow_null=True)
    ownerId = serializers.IntegerField(allow_null=True)
    ownerName = serializers.CharField(allow_null=True)


class LatestPredictionSerializer(serializers.Serializer):
    churnProbability = serializers.FloatField()
    riskLevel = serializers.CharField()
    topCauses = serializers.ListField(child=serializers.DictField())
    predictionDate = serializers.DateTimeField()
    modelVersion = serializers.CharField()


class CustomerDetailSerializer(CustomerOutputSerializer):
    latestPrediction = LatestPredictionSerializer(allow_null=True)
    openInterventions = serializers.IntegerField(help_text="Interventions not yet completed or cancelled.")


class SessionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customerId = serializers.IntegerField()
    startedAt = serializers.DateTimeField()
    endedAt = serializers.DateTimeField(allow_null=True)
    pagesViewed = serializers.IntegerField()
    actions = serializers.JSONField()


class TimelineEventSerializer(serializers.Serializer):
    type = serializers.CharField()
    at = serializers.DateTimeField()
    title = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)
    ref = serializers.DictField()


class CsvTextField(serializers.CharField):
    """The CSV text. NUL characters pass here: the import names the row and column that carries
    one (every column it writes refuses them) and ignores them in columns it does not import."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class CsvImportInputSerializer(serializers.Serializer):
    csv = CsvTextField(trim_whitespace=False, max_length=MAX_IMPORT_CHARS)


class CsvImportErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class CsvImportOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    errors = CsvImportErrorSerializer(many=True)
    ignoredColumns = serializers.ListField(child=serializers.CharField(), help_text="Header cells not imported")


class CsvImportRejectedSerializer(serializers.Serializer):
    """A 400: invalid rows (the import's own shape, `errors` a list of rows) or an invalid request
    (the API's error shape, `errors` keyed by field)."""

    message = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.JSONField()
    success = serializers.BooleanField(required=False)
    created = serializers.IntegerField(required=False)
    updated = serializers.IntegerField(required=False)
    ignoredColumns = serializers.ListField(child=serializers.CharField(), required=False)


class ImportJobInputSerializer(serializers.Serializer):
    """multipart/form-data: the files (field `files`, repeated) and the options."""

    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        help_text="One file per kind, named after it (customers.csv, user_sessions.jsonl.gz, tickets.parquet…)",
    )
    dryRun = strict.BooleanField(default=False, help_text="Validate and count, write nothing")
    onError = serializers.ChoiceField(choices=["reject", "skip"], default="reject")
    timezone = strict.TimeZoneField(default="UTC", help_text="Zone of naive timestamps (IANA name)")
    mapping = serializers.FileField(required=False, help_text="A JSON or TOML mapping file (see the import docs)")


class ImportFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    size = serializers.IntegerField()


class ImportProgressSerializer(serializers.Serializer):
    file = serializers.CharField()
    kind = serializers.CharField()
    bytes = serializers.IntegerField()
    bytesRead = serializers.IntegerField()
    rows = serializers.IntegerField(help_text="Rows read so far (counted every 10,000 rows)")
    rowsEstimate = serializers.IntegerField(allow_null=True, help_text="Rows in the file, estimated from bytes read")
    state = serializers.ChoiceField(choices=["pending", "reading", "writing", "done"])


class ImportFileResultSerializer(serializers.Serializer):
    file = serializers.CharField()
    kind = serializers.CharField()
    rows = serializers.IntegerField()
    inserted = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rejected = serializers.IntegerField()
    imported = serializers.BooleanField(help_text="Committed (false in a dry run, or when the file was refused)")
    error = serializers.CharField(allow_null=True, help_text="Why nothing of the file was imported")
    unknownColumns = serializers.ListField(child=serializers.CharField())


class ImportResultSerializer(serializers.Serializer):
    files = ImportFileResultSerializer(many=True)
    totals = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="Per kind: inserted, updated, unchanged, rejected",
    )
    dryRun = serializers.BooleanField()


class ImportJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed"])
    dryRun = serializers.BooleanField()
    onError = serializers.CharField()
    timezone = serializers.CharField()
    files = ImportFileSerializer(many=True)
    progress = ImportProgressSerializer(many=True)
    result = ImportResultSerializer(allow_null=True)
    dryRunResult = ImportResultSerializer(allow_null=True, help_text="The dry run's counts, once confirmed")
    errorCount = serializers.IntegerField(help_text="Rows of the error report")
    errorsUrl = serializers.CharField(help_text="The per-row error report (CSV)")
    error = serializers.CharField(help_text="Why the job failed as a whole (empty otherwise)")
    createdBy = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
