import django_filters

from core.api.filters import IdFilter
from playbooks.models import EmailReview


class EmailReviewFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=EmailReview.Status.choices)
    playbookId = IdFilter(field_name="playbook_id")

    class Meta:
        model = EmailReview
        fields: list[str] = []
