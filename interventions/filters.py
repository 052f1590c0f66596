import django_filters

from interventions.models import Intervention


class InterventionFilter(django_filters.FilterSet):
    customerId = django_filters.NumberFilter(field_name="customer_id", min_value=1, max_value=2**31 - 1)
    status = django_filters.ChoiceFilter(choices=Intervention.Status.choices)
    priority = django_filters.ChoiceFilter(choices=Intervention.Priority.choices)
    type = django_filters.CharFilter(field_name="type", lookup_expr="iexact", max_length=200)
    ordering = django_filters.OrderingFilter(
        fields=(("created_at", "createdAt"), ("due_date", "dueDate"), ("priority", "priority"), ("id", "id"))
    )

    class Meta:
        model = Intervention
        fields: list[str] = []
