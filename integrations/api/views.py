from django.db.models import QuerySet
from rest_framework import mixins, viewsets

from integrations import selectors
from integrations.api.serializers import IntegrationOutputSerializer


class IntegrationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = IntegrationOutputSerializer

    def get_queryset(self) -> QuerySet:
        return selectors.integration_list()
