"""The columns a customers CSV row may set, and how each is read and bounded.

A DRF serializer used as a schema (its messages are the ones the import reports per cell); it
lives apart from `customers.services`, which reads rows through it and imports no DRF.
"""

from rest_framework import serializers


class CustomerImportRowSerializer(serializers.Serializer):
    """One CSV row. Header names may be snake_case or camelCase."""

    name = serializers.CharField(max_length=500)
    email = serializers.EmailField(max_length=254)
    company = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    plan = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    mrr = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False, default=0)
    signup_date = serializers.DateTimeField(required=False, allow_null=True, default=None)
    last_login = serializers.DateTimeField(required=False, allow_null=True, default=None)
    nps_score = serializers.IntegerField(min_value=0, max_value=10, required=False, allow_null=True, default=None)
    support_tickets = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False, default=0)
    is_active = serializers.BooleanField(required=False, default=True)
    owner = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
