import django_filters

from core.api.filters import IdFilter, TextFilter
from interventions.models import Intervention


class InterventionFilter(django_filters.FilterSet):
    customerId = IdFilter(field_name="customer_id")
    status = django_filters.ChoiceFilter(choices=Intervention.Status.choices)
    priority = django_filters.ChoiceFilter(choices=Intervention.Priority.choices)
    type = TextFilter(field_name="type", lookup_expr="iexact", max_length=200)
    ordering = django_filters.OrderingFilter(
        fields=(("created_at", "createdAt"), ("due_date", "dueDate"), ("priority", "priority"), ("id", "id"))
    )

    class Meta:
        model = Intervention
        fields: list[str] = []
