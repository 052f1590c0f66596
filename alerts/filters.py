import django_filters

from alerts.models import Alert


class AlertFilter(django_filters.FilterSet):
    isRead = django_filters.BooleanFilter(field_name="read")
    severity = django_filters.ChoiceFilter(choices=Alert.Severity.choices)
    customerId = django_filters.NumberFilter(field_name="customer_id", min_value=1, max_value=2**31 - 1)

    class Meta:
        model = Alert
        fields: list[str] = []
