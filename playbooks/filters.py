import django_filters

from playbooks.models import EmailReview


class EmailReviewFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=EmailReview.Status.choices)
    playbookId = django_filters.NumberFilter(field_name="playbook_id", min_value=1, max_value=2**31 - 1)

    class Meta:
        model = EmailReview
        fields: list[str] = []
