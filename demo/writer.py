"""Bulk writes of column arrays: COPY on PostgreSQL, batched executemany elsewhere (SQLite).

Rows go in as prepared text/number columns rather than model instances: a million sessions
as Django objects would take longer to build than to load, and the explicit `created_at`
values survive (bulk_create would overwrite every auto_now_add field with "now").
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from django.db import connections
from django.db.models import Model
from psycopg.copy import QueuedLibpqWriter

DAY_SECONDS = 86400
SQLITE_BATCH = 20_000
COPY_CHUNK = 50_000  # rows rendered to CSV at a time: bounds memory, lets COPY overlap with us


class Writer:
    """Writes rows into one database connection inside the caller's transaction."""

    def __init__(self, as_of: dt.datetime, *, using: str = "default", on_rows: Callable[[int], None] | None = None):
        self.connection = connections[using]
        self.postgres = self.connection.vendor == "postgresql"
        self.as_of_epoch = int(as_of.timestamp())
        self.on_rows = on_rows or (lambda count: None)

    # --- value encoders -------------------------------------------------------------------
    def timestamps(self, t: np.ndarray) -> np.ndarray:
        """Days relative to as-of -> timestamps in the backend's text form; NaN -> NULL."""
        t = np.asarray(t, dtype=np.float64)
        if t.size == 0:
            return np.array([], dtype=object)
        missing = np.isnan(t)
        seconds = self.as_of_epoch + np.round(np.where(missing, 0.0, t) * DAY_SECONDS).astype(np.int64)
        text = seconds.astype("datetime64[s]").astype(str)  # 2025-06-30T12:00:00
        # SQLite stores Django datetimes as "YYYY-MM-DD HH:MM:SS" in UTC; PostgreSQL wants a zone.
        text = np.strings.add(text, "+00:00") if self.postgres else np.strings.replace(text, "T", " ")
        return _with_nulls(text, missing)

    def decimals(self, values: np.ndarray, places: int) -> np.ndarray:
        """Values rounded to `places` decimals; NaN -> NULL.

        A float rounded this way prints (shortest repr) as exactly that decimal, which both
        backends parse into the decimal column, and it is far cheaper than formatting text.
        """
        values = np.round(np.asarray(values, dtype=np.float64), places)
        missing = np.isnan(values)
        if self.postgres or not missing.any():
            return values  # pandas writes NaN as the NULL marker
        out = values.astype(object)
        out[missing] = None
        return out

    @staticmethod
    def json(values: Sequence[Any]) -> list[str]:
        return [json.dumps(value, separators=(",", ":")) for value in values]

    # --- writes ---------------------------------------------------------------------------
    def reserve_ids(self, model: type[Model], count: int) -> np.ndarray:
        """Primary keys for `count` new rows, so related rows can be built before anything is written."""
        table = model._meta.db_table
        with self.connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
                )
                return np.sort(np.array([row[0] for row in cursor.fetchall()], dtype=np.int64))
            # SQLite (the write lock is held for the whole transaction, so nobody races us).
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {self.connection.ops.quote_name(table)}")  # noqa: S608
            start = cursor.fetchone()[0]
            cursor.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = %s", [table])
            start = max(start, cursor.fetchone()[0])
        return np.arange(start + 1, start + 1 + count, dtype=np.int64)

    def insert(self, model: type[Model], columns: dict[str, Any]) -> int:
        """Insert rows given column-wise (db column name -> values); returns the row count."""
        arrays = {name: _column(values) for name, values in columns.items()}
        count = len(next(iter(arrays.values()))) if arrays else 0
        size = COPY_CHUNK if self.postgres else SQLITE_BATCH
        return self.insert_chunks(model, ({k: v[part] for k, v in arrays.items()} for part in _parts(count, size)))

    def insert_chunks(self, model: type[Model], chunks: Iterable[dict[str, Any]]) -> int:
        """Insert rows arriving as column-wise chunks (all with the same columns) in one statement.

        On PostgreSQL a background thread feeds COPY, so the next chunk is built while the
        server is still parsing the previous one (two cores: one for us, one for the server).
        """
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            return 0
        names = list(first)
        table = self.connection.ops.quote_name(model._meta.db_table)
        quoted = ", ".join(self.connection.ops.quote_name(name) for name in names)
        count = 0
        with self.connection.cursor() as cursor:
            if self.postgres:
                sql = f"COPY {table} ({quoted}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
                raw = cursor.cursor  # the psycopg cursor; Django's debug wrapper hides `writer=`
                with raw.copy(sql, writer=QueuedLibpqWriter(raw)) as copy:
                    for chunk in itertools.chain([first], chunks):
                        frame = pd.DataFrame({name: _column(chunk[name]) for name in names}, copy=False)
                        copy.write(frame.to_csv(header=False, index=False, na_rep="\\N", lineterminator="\n"))
                        count += len(frame)
                        self.on_rows(len(frame))
            else:
                placeholders = ", ".join(["%s"] * len(names))
                sql = f"INSERT INTO {table} ({quoted}) VALUES ({placeholders})"  # noqa: S608
                for chunk in itertools.chain([first], chunks):
                    rows = list(zip(*(_column(chunk[name]).tolist() for name in names), strict=True))
                    cursor.executemany(sql, rows)
                    count += len(rows)
                    self.on_rows(len(rows))
        return count


def _parts(total: int, size: int) -> list[slice]:
    return [slice(start, min(total, start + size)) for start in range(0, total, size)]


def _with_nulls(text: np.ndarray, missing: np.ndarray) -> np.ndarray:
    if not missing.any():
        return text
    out = text.astype(object)
    out[missing] = None
    return out


def _column(values: Any) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
