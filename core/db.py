"""Database helpers every app may use (the kernel: imports no app)."""

from collections.abc import Sequence
from itertools import batched
from typing import cast

from django.db import connection, transaction
from django.db.models import Field, Model, QuerySet

DELETE_BATCH = 5000
UPDATE_CHUNK = 1000


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


def values_update(model: type[Model], objects: Sequence[Model], fields: Sequence[str]) -> int:
    """Write `fields` of every object (matched by primary key); returns how many rows were sent.

    One UPDATE … FROM (VALUES …) instead of Django's `bulk_update`, which builds a CASE expression
    per field with a branch per row: compiling it costs about a millisecond of Python per row,
    which dominated applying a webhook batch. PostgreSQL gets the rows as one VALUES list with
    typed casts; elsewhere this falls back to `bulk_update`.
    """
    if not objects:
        return 0
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objects, list(fields), batch_size=UPDATE_CHUNK)
        return len(objects)
    meta = model._meta
    columns = [cast(Field, meta.get_field(name)) for name in fields]
    pk = cast(Field, meta.pk)
    qn = connection.ops.quote_name
    names = ", ".join([qn(str(pk.column)), *(qn(str(f.column)) for f in columns)])
    sets = ", ".join(f"{qn(str(f.column))} = v.{qn(str(f.column))}::{f.db_type(connection)}" for f in columns)
    table, key = qn(meta.db_table), qn(str(pk.column))
    match = f"{table}.{key} = v.{key}::{pk.db_type(connection)}"
    with connection.cursor() as cursor:
        for chunk in batched(objects, UPDATE_CHUNK):
            row = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
            params: list = []
            for obj in chunk:
                params.append(obj.pk)
                params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns)
            values = ", ".join([row] * len(chunk))
            cursor.execute(f"UPDATE {table} SET {sets} FROM (VALUES {values}) AS v({names}) WHERE {match}", params)  # noqa: S608
    return len(objects)
