"""Database helpers every app may use (the kernel: imports no app)."""

from django.db import transaction
from django.db.models import QuerySet

DELETE_BATCH = 5000


def delete_in_batches(queryset: QuerySet, *, batch: int = DELETE_BATCH) -> int:
    """Delete in primary-key batches: short transactions, no table-wide lock, bounded memory.

    The query runs again for every batch, so keep it cheap (an indexed filter, no window)."""
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        with transaction.atomic():
            deleted, _ = queryset.model.objects.filter(pk__in=ids).delete()
        total += len(ids) if deleted else 0
