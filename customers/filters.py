"""Query parameters of the customer list (camelCase, like the JSON it returns)."""

from collections.abc import Mapping

import django_filters
from django.db.models import Q, QuerySet

from customers.models import Customer, RiskLevel
from customers.selectors import risk_thresholds


class CustomerFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search", max_length=200, label="Name, e-mail or company contains")
    plan = django_filters.CharFilter(field_name="plan", lookup_expr="iexact", max_length=100)
    isActive = django_filters.BooleanFilter(field_name="is_active")
    riskLevel = django_filters.ChoiceFilter(method="filter_risk_level", choices=RiskLevel.choices)
    ownerId = django_filters.NumberFilter(field_name="owner_id", min_value=1, max_value=2**31 - 1)
    minHealth = django_filters.NumberFilter(field_name="health_score", lookup_expr="gte")
    maxHealth = django_filters.NumberFilter(field_name="health_score", lookup_expr="lte")
    ordering = django_filters.OrderingFilter(
        fields=(
            ("id", "id"),
            ("name", "name"),
            ("company", "company"),
            ("mrr", "mrr"),
            ("churn_risk", "churnRisk"),
            ("health_score", "healthScore"),
            ("signup_date", "signupDate"),
            ("last_login", "lastLogin"),
        )
    )

    class Meta:
        model = Customer
        fields: list[str] = []

    @classmethod
    def narrows(cls, params: Mapping[str, str]) -> bool:
        """Whether these parameters leave out any customer (ordering does not; empty values are
        ignored, as django-filter ignores them)."""
        return any(
            params.get(name) and not isinstance(field, django_filters.OrderingFilter)
            for name, field in cls.base_filters.items()
        )

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(email__icontains=value) | Q(company__icontains=value))

    def filter_risk_level(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        medium, high = risk_thresholds()
        if value == "high":
            return queryset.filter(churn_risk__gte=high)
        if value == "medium":
            return queryset.filter(churn_risk__gte=medium, churn_risk__lt=high)
        return queryset.filter(churn_risk__lt=medium)
