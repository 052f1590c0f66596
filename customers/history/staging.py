"""Set-based writes for history files: rows go to a temporary table, then one statement each
updates what changed and inserts what is new.

PostgreSQL loads the temporary table with binary COPY; SQLite with executemany. The merge is
the same SQL on both (UPDATE … FROM, INSERT … SELECT … WHERE NOT EXISTS) and counts exactly:
an UPDATE only touches rows whose values differ, so importing the same file twice reports
0 inserted, 0 updated. Nothing here sends signals, enqueues tasks or raises alerts: it is plain
SQL inside the caller's transaction.

A first load skips the temporary table: a `direct` stage (PostgreSQL) copies its rows straight
into the target table, which is exact as long as no row of the file matches a stored one (the
merge would then insert every row and update none). That holds while the database accepts every
external id (the table's unique constraint checks it as the rows are written), no customer of a
row without an external id has a stored row without one (checked per chunk before it is written),
and the file repeats no (customer, instant) among such rows. When it stops holding in the first
chunk, the stage falls back to staging from that chunk on; later, it raises `NotFirstLoad` and
the caller rolls the file back and imports it again through the merge.
"""

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import batched
from typing import Any

import orjson
import psycopg
from django.db import IntegrityError, connection
from django.db.models import DateTimeField, DecimalField, JSONField, Model
from psycopg.types.json import Jsonb

CHUNK = 5000  # rows per COPY / executemany

_PG_TYPES = {
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "timestamp with time zone": "timestamptz",
    "text": "text",
    "boolean": "bool",
}


class NotFirstLoad(Exception):
    """A direct load met a row that matches a stored one after it had written rows: the file must
    be rolled back and merged."""


def _dumps_json(value: Any) -> bytes:
    return orjson.dumps(value)


class Stage:
    """A temporary table with the `fields` of `model` and each row's source line.

    Rows are matched to stored ones by `key` (all its columns present) or, for rows without an
    `external_id`, by `natural` (the customer and the instant), among stored rows that have no
    external id either.
    """

    def __init__(
        self,
        model: type[Model],
        fields: Sequence[str],
        *,
        key: Sequence[str] = ("external_id",),
        natural: Sequence[str] = (),
        suffix: str = "",
        direct: bool = False,
    ) -> None:
        self.model = model
        self.target = model._meta.db_table
        self.table = f"history_in_{self.target}{suffix}"
        self.fields = [model._meta.get_field(name) for name in fields]
        self.columns = [f.column for f in self.fields]
        self.key, self.natural = list(key), list(natural)
        self.postgres = connection.vendor == "postgresql"
        self.buffer: list[tuple] = []
        self.count = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        types = [self._temp_type(f) for f in self.fields]
        self._types = types
        self._copy_types = ["int8", *(_PG_TYPES.get(t, "numeric" if t.startswith("numeric") else t) for t in types)]
        self._json = [isinstance(f, JSONField) for f in self.fields]
        # Direct load: rows go straight to the target table until one may match a stored row.
        self.direct = direct and self.postgres and bool(self.natural) and self.key == ["external_id"]
        self.written_directly = False  # a chunk is in the target table (no falling back in place)
        if self.direct:
            self._external_at = 1 + self.columns.index("external_id")
            self._natural_at = [1 + self.columns.index(c) for c in self.natural]
            self._customer_at = self._natural_at[0]
            self._natural_seen: set[int] = set()  # hashes of (customer, instant) of rows without an id
            self._customers_checked: set[int] = set()
            self._direct_types = [
                "jsonb" if is_json else t for t, is_json in zip(self._copy_types[1:], self._json, strict=True)
            ]
        else:
            self._create()

    def _create(self) -> None:
        qn = connection.ops.quote_name
        columns = ", ".join(f"{qn(c)} {t}" for c, t in zip(self.columns, self._types, strict=True))
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
                cursor.execute(f"CREATE TEMPORARY TABLE {self.table} (line int8, {columns}) ON COMMIT DROP")
            else:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{self.table}")
                cursor.execute(f"CREATE TEMPORARY TABLE {self.table} (line integer, {columns})")

    def _stop_direct(self) -> None:
        """Stage from now on; only possible before any row is in the target table."""
        if self.written_directly:
            raise NotFirstLoad
        self.direct = False
        self._create()

    def _temp_type(self, field: Any) -> str:
        if isinstance(field, JSONField):
            return "text"  # PostgreSQL: cast to jsonb in the merge (COPY takes the JSON text)
        if isinstance(field, DecimalField) and self.postgres:
            return "numeric"
        db_type = field.db_type(connection)
        return "integer" if db_type in ("serial", "bigserial") else db_type

    def add(self, line: int, values: Sequence[Any]) -> None:
        row = (line, *values)
        if self.direct and row[self._external_at] is None:
            # A hash, not the key, keeps a 1M-row file in bounded memory; a collision only costs
            # the direct path (the merge then judges the rows exactly).
            natural = hash(tuple(row[i] for i in self._natural_at))
            if natural in self._natural_seen:
                self._stop_direct()
            else:
                self._natural_seen.add(natural)
        self.buffer.append(row)
        if len(self.buffer) >= CHUNK:
            self.flush(wait=False)

    def flush(self, *, wait: bool = True) -> None:
        """Send the buffered rows. PostgreSQL: the COPY runs on a worker thread while the caller
        parses the next chunk (at most one chunk in flight, so memory stays bounded); `wait`
        returns only once everything sent is in the table."""
        if self.buffer:
            rows, self.buffer = self.buffer, []
            self.count += len(rows)
            if self.postgres:
                self._wait()
                if self.direct and not self.written_directly:
                    self._first_direct(rows)
                    return
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-copy")
                # The same connection and transaction, used by one thread at a time: the caller
                # touches the database again only after _wait().
                self._pending = self._pool.submit(self._copy, connection.connection, rows)
            else:
                self._insert(rows)
        if wait:
            self._wait()

    def _first_direct(self, rows: list[tuple]) -> None:
        """The first chunk of a direct load, written at once inside a savepoint: when it meets a
        stored row, it is undone and staged instead, and so is the rest of the file."""
        with connection.cursor() as cursor:
            cursor.execute("SAVEPOINT history_direct")
            try:
                self._copy(connection.connection, rows)
            except (NotFirstLoad, psycopg.errors.UniqueViolation):
                cursor.execute("ROLLBACK TO SAVEPOINT history_direct")
                cursor.execute("RELEASE SAVEPOINT history_direct")
                self._stop_direct()
                self._copy(connection.connection, rows)
                return
            except psycopg.IntegrityError as error:
                raise IntegrityError(str(error)) from error
            cursor.execute("RELEASE SAVEPOINT history_direct")
        self.written_directly = True

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.result()
            except psycopg.errors.UniqueViolation:
                if self.direct:
                    raise NotFirstLoad from None
                raise
            except psycopg.IntegrityError as error:  # what Django's cursor would have raised
                raise IntegrityError(str(error)) from error

    def _copy(self, raw: Any, rows: list[tuple]) -> None:
        if self.direct:
            self._copy_direct(raw, rows)
            return
        columns = ", ".join(["line", *(connection.ops.quote_name(c) for c in self.columns)])
        json_at = [i + 1 for i, is_json in enumerate(self._json) if is_json]
        with raw.cursor() as cursor, cursor.copy(f"COPY {self.table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(self._copy_types)
            for row in rows:
                if json_at:
                    row = list(row)
                    for i in json_at:
                        row[i] = orjson.dumps(row[i]).decode()
                copy.write_row(row)

    def _copy_direct(self, raw: Any, rows: list[tuple]) -> None:
        """Rows into the target table; first, the customers of rows without an external id that
        this load has not seen yet must have no stored row without one."""
        qn = connection.ops.quote_name
        with raw.cursor() as cursor:
            fresh = {row[self._customer_at] for row in rows if row[self._external_at] is None}
            fresh -= self._customers_checked
            if fresh:
                cursor.execute(
                    f"SELECT 1 FROM {qn(self.target)} WHERE {self.natural[0]} = ANY(%s)"  # noqa: S608
                    " AND external_id IS NULL LIMIT 1",
                    [list(fresh)],
                )
                if cursor.fetchone() is not None:
                    raise NotFirstLoad
                self._customers_checked |= fresh
            columns = ", ".join(qn(c) for c in self.columns)
            json_at = [i for i, is_json in enumerate(self._json) if is_json]
            with cursor.copy(f"COPY {qn(self.target)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(self._direct_types)
                for row in rows:
                    values = list(row[1:])
                    for i in json_at:
                        values[i] = Jsonb(values[i], _dumps_json)
                    copy.write_row(values)

    def _insert(self, rows: list[tuple]) -> None:
        columns = ", ".join(["line", *(connection.ops.quote_name(c) for c in self.columns)])
        with connection.cursor() as cursor:
            adapters = self._adapters()
            prepared = [
                (row[0], *(v if a is None or v is None else a(v) for a, v in zip(adapters, row[1:], strict=True)))
                for row in rows
            ]
            marks = ", ".join(["%s"] * (len(self.columns) + 1))
            cursor.executemany(f"INSERT INTO {self.table} ({columns}) VALUES ({marks})", prepared)  # noqa: S608

    def _adapters(self) -> list[Callable[[Any], Any] | None]:
        """What Django's `get_db_prep_save` does to each field's value on SQLite, looked up once
        (calling it per value costs more than the rest of the load)."""
        ops, adapters = connection.ops, []
        for f in self.fields:
            if isinstance(f, JSONField):
                adapters.append(lambda v, f=f: ops.adapt_json_value(v, f.encoder))
            elif isinstance(f, DecimalField):
                adapters.append(lambda v, f=f: ops.adapt_decimalfield_value(v, f.max_digits, f.decimal_places))
            elif isinstance(f, DateTimeField):
                adapters.append(ops.adapt_datetimefield_value)
            else:
                adapters.append(None)
        return adapters

    def _modes(self) -> list[tuple[list[str], str, str]]:
        """(match columns, condition on the staged row s, condition on the stored row t)."""
        present = " AND ".join(f"s.{c} IS NOT NULL" for c in self.key)
        modes = [(self.key, present, "TRUE")]
        if self.natural:
            modes.append((self.natural, "s.external_id IS NULL", "t.external_id IS NULL"))
        return modes

    def duplicates(self) -> list[tuple[int, int]]:
        """(line, line of the first row with the same key) for every repeated key in the file."""
        self.flush()
        if self.direct:
            return []  # a repeated external id fails the COPY, a repeated instant stops the direct load
        found: list[tuple[int, int]] = []
        with connection.cursor() as cursor:
            for columns, staged, _ in self._modes():
                keys = ", ".join(columns)
                join = " AND ".join(f"s.{c} = d.{c}" for c in columns)
                cursor.execute(
                    f"SELECT s.line, d.first FROM {self.table} s JOIN (SELECT {keys}, MIN(line) AS first"  # noqa: S608
                    f" FROM {self.table} s WHERE {staged} GROUP BY {keys} HAVING COUNT(*) > 1) d ON {join}"
                    f" WHERE {staged} AND s.line > d.first ORDER BY s.line"
                )
                found.extend(cursor.fetchall())
        return found

    def drop_lines(self, lines: Sequence[int]) -> None:
        with connection.cursor() as cursor:
            for chunk in batched(lines, 1000):
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"DELETE FROM {self.table} WHERE line IN ({marks})", list(chunk))  # noqa: S608
        self.count -= len(lines)

    def _is_json(self, column: str) -> bool:
        return isinstance(self.fields[self.columns.index(column)], JSONField)

    def _staged(self, column: str, *, compare: bool = False) -> str:
        """The staged value as the target column takes it (PostgreSQL: JSON text cast to jsonb) or,
        to compare on SQLite, JSON in one canonical text (json() minifies)."""
        if not self._is_json(column):
            return f"s.{column}"
        if self.postgres:
            return f"s.{column}::jsonb"
        return f"json(s.{column})" if compare else f"s.{column}"

    def _stored(self, column: str) -> str:
        if self._is_json(column) and not self.postgres:
            return f"json({self.target}.{column})"
        return f"{self.target}.{column}"

    def merge(self) -> tuple[int, int]:
        """Write the staged rows; returns (inserted, updated). Unchanged rows are not rewritten."""
        self.flush()
        if self.direct:
            return self.count, 0
        inserted = updated = 0
        table, distinct = self.target, "IS DISTINCT FROM" if self.postgres else "IS NOT"
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(f"ANALYZE {self.table}")
            for columns, staged, stored in self._modes():
                changing = [c for c in self.columns if c not in columns]
                if changing:
                    sets = ", ".join(f"{c} = {self._staged(c)}" for c in changing)
                    before = ", ".join(self._stored(c) for c in changing)
                    after = ", ".join(self._staged(c, compare=True) for c in changing)
                    match = " AND ".join(f"{table}.{c} = s.{c}" for c in columns)
                    cursor.execute(
                        f"UPDATE {table} SET {sets} FROM {self.table} AS s"  # noqa: S608
                        f" WHERE {staged} AND {stored.replace('t.', table + '.')} AND {match}"
                        f" AND ({before}) {distinct} ({after})"
                    )
                    updated += cursor.rowcount
                match = " AND ".join(f"t.{c} = s.{c}" for c in columns)
                names = ", ".join(self.columns)
                values = ", ".join(self._staged(c) for c in self.columns)
                cursor.execute(
                    f"INSERT INTO {table} ({names}) SELECT {values} FROM {self.table} AS s WHERE {staged}"  # noqa: S608
                    f" AND NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {match} AND {stored})"
                )
                inserted += cursor.rowcount
        return inserted, updated

    def drop(self) -> None:
        """SQLite keeps temporary tables for the connection's life; PostgreSQL drops them at commit."""
        if self._pool is not None:
            try:
                self._wait()
            finally:
                self._pool.shutdown()
        if not self.postgres:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{self.table}")
