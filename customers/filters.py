"""Query parameters of the customer list (camelCase, like the JSON it returns)."""

from collections.abc import Mapping

import django_filters
from django.db.models import Q, QuerySet

from core.api.filters import BoolFilter, IdFilter, IntegerFilter, TextFilter
from customers.models import Customer, RiskLevel
from customers.selectors import risk_band_q


class CustomerFilter(django_filters.FilterSet):
    search = TextFilter(method="filter_search", max_length=200, label="Name, e-mail or company contains")
    plan = TextFilter(field_name="plan", lookup_expr="iexact", max_length=100)
    isActive = BoolFilter(field_name="is_active")
    riskLevel = django_filters.ChoiceFilter(method="filter_risk_level", choices=RiskLevel.choices)
    ownerId = IdFilter(field_name="owner_id")
    minHealth = IntegerFilter(field_name="health_score", lookup_expr="gte", min_value=0, max_value=100)
    maxHealth = IntegerFilter(field_name="health_score", lookup_expr="lte", min_value=0, max_value=100)
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
        return queryset.filter(risk_band_q(value))
