import django_filters

from alerts.models import Alert
from core.api.filters import BoolFilter, IdFilter


class AlertFilter(django_filters.FilterSet):
    isRead = BoolFilter(field_name="read")
    severity = django_filters.ChoiceFilter(choices=Alert.Severity.choices)
    customerId = IdFilter(field_name="customer_id")

    class Meta:
        model = Alert
        fields: list[str] = []
