"""One UPDATE … FROM (VALUES …) for many rows, instead of Django's `bulk_update`.

`bulk_update` builds a CASE expression per field with a branch per row; compiling it costs about
a millisecond of Python per row, which dominated applying a webhook batch. On PostgreSQL this
sends the rows as one VALUES list with typed casts; elsewhere it falls back to `bulk_update`.
"""

from collections.abc import Sequence
from itertools import batched

from django.db import connection
from django.db.models import Model

CHUNK = 1000


def values_update(model: type[Model], objects: Sequence[Model], fields: Sequence[str]) -> int:
    """Write `fields` of every object (matched by primary key); returns how many rows were sent."""
    if not objects:
        return 0
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objects, list(fields), batch_size=CHUNK)
        return len(objects)
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    pk = meta.pk
    qn = connection.ops.quote_name
    names = ", ".join([qn(pk.column), *(qn(f.column) for f in columns)])
    sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}::{f.db_type(connection)}" for f in columns)
    table, key = qn(meta.db_table), qn(pk.column)
    match = f"{table}.{key} = v.{key}::{pk.db_type(connection)}"
    with connection.cursor() as cursor:
        for chunk in batched(objects, CHUNK):
            row = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
            params: list = []
            for obj in chunk:
                params.append(obj.pk)
                params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns)
            values = ", ".join([row] * len(chunk))
            cursor.execute(f"UPDATE {table} SET {sets} FROM (VALUES {values}) AS v({names}) WHERE {match}", params)  # noqa: S608
    return len(objects)
