"""Importing a company's history: files of customers and their facts into the customers' tables.

One file, one transaction: a file imports whole or not at all (`on_error="reject"`, the default),
or imports its good rows and reports the bad ones (`on_error="skip"`). Rows are matched to what
is stored by external ids (customers: external id, else e-mail; facts without an id: the customer
and the instant), so importing the same files twice changes nothing and a newer version of a row
updates it. Writes are plain bulk SQL (see `staging`): no signals, no alerts, no playbook
enrolment, no real-time re-scores — one batch scoring afterwards is the caller's choice.
"""

import datetime as dt
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.db.models.functions import Lower
from django.utils import timezone

from customers.contracts import customer_contracts_refresh
from customers.history.apply import CustomerRow, customers_by_email, customers_upsert
from customers.history.kinds import (
    CUSTOMER_FIELDS,
    KINDS,
    ORDER,
    PAGE_EVENTS,
    Context,
    Kind,
    RowErrors,
    guess_kind,
    kind_of_file,
    map_header,
    when,
)
from customers.history.readers import FileError, Row, read_rows
from customers.history.staging import NotFirstLoad, Stage
from customers.models import BillingEvent, Customer, NpsResponse, Subscription, SupportTicket, UserSession
from customers.sessions import session_key

MAX_PROBLEMS = 1000  # rejected rows named in the report; the count covers all of them
CUSTOMER_CHUNK = 2000


class ImportError_(ValueError):
    """The import cannot start (no such file, unknown kind, bad option): nothing was read."""


class Progress(Protocol):
    """What the import reports while it reads a file: bytes read (of the size given when the
    progress was opened), rows read every 10,000 rows and once before writing, and the end."""

    def update(self, n: int) -> Any: ...
    def rows(self, n: int, *, writing: bool = False) -> Any: ...
    def close(self) -> Any: ...


@dataclass
class Problem:
    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = (
            self.file
            + (f", line {self.line}" if self.line else "")
            + (f", column {self.column}" if self.column else "")
        )
        return f"{where}: {self.message}"


@dataclass
class FileResult:
    path: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    written: bool = False  # committed (not a dry run, not rolled back)
    direct: bool = False  # a first load: copied straight into the table, no staging or merge
    fatal: str | None = None  # why nothing of the file was imported
    problems: list[Problem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)

    def problem(self, line: int | None, column: str | None, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(Path(self.path).name, line, column, message))


@dataclass
class ImportResult:
    files: list[FileResult]
    dry_run: bool

    def totals(self) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for f in self.files:
            t = totals.setdefault(f.kind, dict.fromkeys(("inserted", "updated", "unchanged", "rejected"), 0))
            for name in t:
                t[name] += getattr(f, name)
        return totals

    @property
    def ok(self) -> bool:
        return all(f.fatal is None and f.rejected == 0 for f in self.files)

    @property
    def changed(self) -> int:
        return sum(f.inserted + f.updated for f in self.files)


class _Rollback(Exception):
    pass


class _CountedProgress:
    """A file's progress that counts the bytes reported; a file read a second time (a direct load
    that met stored rows late) skips the bytes already reported, so they count once."""

    def __init__(self, bar: Progress, *, skip: int = 0) -> None:
        self.bar, self.skip, self.bytes = bar, skip, 0

    def update(self, n: int) -> None:
        self.bytes += n
        counted = max(0, n - self.skip)
        self.skip = max(0, self.skip - n)
        if counted:
            self.bar.update(counted)

    def rows(self, n: int, *, writing: bool = False) -> None:
        self.bar.rows(n, writing=writing)

    def close(self) -> None:
        self.bar.close()


def load_mapping(path: Path) -> dict[str, dict[str, str | None]]:
    """A mapping file: JSON or TOML, `{kind: {written column: canonical column or null}}`; a
    top-level `"*"` (or plain column entries) applies to every kind."""
    return parse_mapping(path.read_bytes(), path.name)


def parse_mapping(raw: bytes, filename: str) -> dict[str, dict[str, str | None]]:
    """A mapping file's content (`filename` tells TOML from JSON and names it in errors)."""
    path = Path(filename)
    try:
        data = tomllib.loads(raw.decode("utf-8")) if path.suffix.lower() == ".toml" else orjson.loads(raw)
    except ValueError as error:
        raise ImportError_(f"{path.name}: not a valid mapping file ({error}).") from None
    if not isinstance(data, dict):
        raise ImportError_(f"{path.name}: the mapping must be an object of kind -> {{column: canonical}}.")
    mapping: dict[str, dict[str, str | None]] = {"*": {}}
    for key, value in data.items():
        if isinstance(value, dict):
            name = "*" if key == "*" else kind_of_file(key) or key
            if name != "*" and name not in KINDS:
                raise ImportError_(f"{path.name}: unknown kind {key!r} (kinds: {', '.join(KINDS)}).")
            mapping.setdefault(name, {}).update(value)
        elif value is None or isinstance(value, str):
            mapping["*"][key] = value
        else:
            raise ImportError_(f"{path.name}: {key!r} must map to a column name or null.")
    for columns in mapping.values():
        for target in columns.values():
            if target is not None and not isinstance(target, str):
                raise ImportError_(f"{path.name}: {target!r} is not a column name.")
    return mapping


def plan_files(paths: Iterable[Path], kind: str | None = None) -> list[tuple[Path, str]]:
    """Every file to import with its kind, in dependency order (customers first)."""
    if kind is not None and kind not in KINDS:
        raise ImportError_(f"Unknown kind {kind!r} (kinds: {', '.join(KINDS)}).")
    planned: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            children = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            found = [(p, kind or kind_of_file(p.name.split(".")[0])) for p in children]
            planned.extend((p, k) for p, k in found if k)
        elif path.is_file():
            detected = kind or kind_of_file(path.name.split(".")[0])
            if detected is None:
                raise ImportError_(
                    f"{path.name}: cannot tell the kind from the file name; name it after a kind"
                    f" ({', '.join(KINDS)}) or pass --kind."
                )
            planned.append((path, detected))
        else:
            raise ImportError_(f"{path}: no such file or directory.")
    return sorted(planned, key=lambda item: (ORDER.index(item[1]), str(item[0])))


def import_history(
    *,
    paths: Iterable[Path],
    kind: str | None = None,
    mapping: Mapping[str, Mapping[str, str | None]] | None = None,
    on_error: str = "reject",
    tz: str = "UTC",
    encoding: str = "utf-8",
    dry_run: bool = False,
    progress: Callable[[Path, int], Progress] | None = None,
    direct: bool = True,
) -> ImportResult:
    """Import every file (a directory means the files in it named after a kind). `direct`: a
    first load of facts (no row matching a stored one) is copied straight into its table on
    PostgreSQL; False stages and merges every file (the same rows, slower)."""
    if on_error not in ("reject", "skip"):
        raise ImportError_("on_error must be reject or skip.")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImportError_(f"Unknown time zone {tz!r} (an IANA name such as Europe/Paris).") from None
    files = plan_files(paths, kind)
    now = timezone.now()
    run = _Run(
        mapping=mapping or {}, on_error=on_error, zone=zone, encoding=encoding, dry_run=dry_run, now=now, direct=direct
    )
    run.subscription_files = [p for p, k in files if k == "subscriptions"]
    if not dry_run:
        results = [run.import_file(path, KINDS[k], progress) for path, k in files]
        return ImportResult(files=results, dry_run=False)
    # A dry run is one transaction rolled back at the end (each file a savepoint in it): later
    # files see what earlier ones would write (the facts of customers the same run creates), and
    # nothing stays.
    results = []
    try:
        with transaction.atomic():
            results.extend(run.import_file(path, KINDS[k], progress) for path, k in files)
            raise _Rollback
    except _Rollback:
        pass
    return ImportResult(files=results, dry_run=True)


@dataclass
class _Run:
    mapping: Mapping[str, Mapping[str, str | None]]
    on_error: str
    zone: ZoneInfo
    encoding: str
    dry_run: bool
    now: dt.datetime
    direct: bool = True
    subscription_files: list[Path] = field(default_factory=list)
    _ends: dict[str, dt.datetime | None] | None = None

    def import_file(self, path: Path, kind: Kind, progress: Callable[[Path, int], Progress] | None) -> FileResult:
        result = FileResult(path=str(path), kind=kind.name)
        bar = progress(path, path.stat().st_size) if progress else None
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    # One history import at a time: a concurrent import of the same file waits here,
                    # then finds its rows stored and merges them (a direct load never doubles rows).
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('customers.history_import'))")
                counted = _CountedProgress(bar) if bar is not None else None
                try:
                    with transaction.atomic():  # a savepoint: a direct load that meets stored rows is undone
                        self._read_and_write(path, kind, result, counted, direct=self.direct)
                except NotFirstLoad:
                    # The file's first chunks were new, a later one was not: read it again and merge.
                    result = FileResult(path=str(path), kind=kind.name)
                    again = _CountedProgress(bar, skip=counted.bytes) if counted is not None else None
                    self._read_and_write(path, kind, result, again, direct=False)
                if result.rejected and self.on_error == "reject":
                    raise _Rollback
                result.written = not self.dry_run  # a dry run's whole transaction is rolled back
        except _Rollback:
            pass
        except FileError as error:
            result.fatal = str(error)
            result.problem(error.line, None, str(error))
        except IntegrityError as error:  # two rows of the file that cannot both hold (swapped e-mails)
            result.fatal = f"the database refused the file: {error}".strip()
            result.problem(None, None, result.fatal)
        finally:
            if bar is not None:
                bar.close()
        if not result.written and result.fatal is None and self.on_error == "reject" and result.rejected:
            result.fatal = f"{result.rejected} bad row(s): nothing of this file was imported."
        return result

    def _read_and_write(
        self, path: Path, kind: Kind, result: FileResult, bar: Progress | None, *, direct: bool
    ) -> None:
        rows = read_rows(path, encoding=self.encoding, report=bar.update if bar else None)
        header = next(rows)
        mapping = {**self.mapping.get("*", {}), **self.mapping.get(kind.name, {})}
        columns, result.ignored_columns, result.unknown_columns = map_header(kind, [str(h) for h in header], mapping)
        targets = list(columns.values())
        doubled = sorted({c for c in targets if targets.count(c) > 1})
        if doubled:
            names = ", ".join(f"{w!r}" for w, c in columns.items() if c in doubled)
            raise FileError(
                f"header: {names} all mean {', '.join(doubled)}; keep one (or map the others to null).", line=1
            )
        missing = [c for c in kind.required if c not in targets]
        if missing:
            other = guess_kind([str(h) for h in header])
            hint = f" It looks like a {other} file." if other and other != kind.name else ""
            raise FileError(
                f"header: missing column(s) {', '.join(missing)} of a {kind.name} file.{hint}"
                " Rename the columns, or give a --mapping file.",
                line=1,
            )
        ctx = Context(tz=self.zone, now=self.now)
        writer = _writer(kind.name, self, ctx, result, set(targets), direct=direct)
        try:
            self._write_rows(rows, kind, columns, ctx, writer, result, bar)
        finally:
            writer.close()  # also waits for a COPY in flight before the transaction ends

    def _write_rows(
        self,
        rows: Iterator[Row | list[str]],
        kind: Kind,
        columns: dict[str, str],
        ctx: Context,
        writer: "_Writer",
        result: FileResult,
        bar: Progress | None,
    ) -> None:
        staging = True
        for row in rows:
            if not isinstance(row, Row):
                continue
            result.rows += 1
            if bar is not None and result.rows % 10_000 == 0:
                bar.rows(result.rows)
            if row.extra or row.missing:
                result.rejected += 1
                state = "more" if row.extra else "fewer"
                result.problem(row.line, None, f"the row has {state} cells than the header has columns.")
                continue
            cells = {canonical: row.cells.get(written) for written, canonical in columns.items()}
            try:
                values = kind.clean(cells, ctx)
            except RowErrors as errors:
                result.rejected += 1
                for column, message in errors.errors:
                    result.problem(row.line, column, message)
                continue
            if staging:
                writer.add(row.line, values)
            # All or nothing: once a row is bad, the rest is only checked (to report every bad row).
            staging = not (result.rejected and self.on_error == "reject")
        if bar is not None:
            bar.rows(result.rows, writing=True)
        if staging:
            writer.finish()

    def subscription_ends(self) -> dict[str, dt.datetime | None]:
        """Customer reference → end of its latest subscription version, from this run's
        subscriptions files (read once, for customers marked inactive without a churn date)."""
        if self._ends is None:
            latest: dict[str, tuple[dt.datetime, dt.datetime | None]] = {}
            kind = KINDS["subscriptions"]
            for path in self.subscription_files:
                try:
                    rows = read_rows(path, encoding=self.encoding)
                    header = next(rows)
                    mapping = {**self.mapping.get("*", {}), **self.mapping.get(kind.name, {})}
                    columns, _, _ = map_header(kind, [str(h) for h in header], mapping)
                    names = {c: w for w, c in columns.items()}
                    for row in rows:
                        if not isinstance(row, Row):
                            continue
                        ref = str(row.cells.get(names.get("customer"), "") or "").strip().lower()
                        try:
                            start = when(row.cells.get(names.get("start_date")), self.zone)
                            end = when(row.cells.get(names.get("end_date")), self.zone)
                        except ValueError:
                            continue  # reported when the file itself is imported
                        if ref and start and (ref not in latest or start > latest[ref][0]):
                            latest[ref] = (start, end)
                except FileError:
                    continue
            self._ends = {ref: end for ref, (_, end) in latest.items()}
        return self._ends


def _customer_index() -> Callable[[str], int | None]:
    """Customer id by external id, else by e-mail (whatever its case)."""
    by_id: dict[str, int] = {}
    by_email: dict[str, int] = {}
    for pk, external_id, email in Customer.objects.values_list("pk", "external_id", Lower("email")).iterator(10_000):
        if external_id:
            by_id[external_id] = pk
        by_email[email] = pk

    def find(ref: str) -> int | None:
        return by_id.get(ref) or by_email.get(ref.lower())

    return find


class _Writer:
    def __init__(self, run: _Run, ctx: Context, result: FileResult, columns: set[str], *, direct: bool) -> None:
        self.run, self.ctx, self.result, self.columns = run, ctx, result, columns
        self.direct = direct  # may copy straight into the table while no row matches a stored one

    def add(self, line: int, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _dedupe(self, stage: Stage, noun: str, *others: Stage) -> bool:
        """Report repeated keys; False when the file must be rolled back."""
        duplicates = stage.duplicates()
        for line, first in duplicates:
            self.result.rejected += 1
            self.result.problem(line, "external_id", f"the same {noun} as line {first} (a key appears once per file).")
        if duplicates and self.run.on_error == "reject":
            return False
        lines = [line for line, _ in duplicates]
        if lines:
            for s in (stage, *others):
                s.drop_lines(lines)
        return True


class _FactWriter(_Writer):
    model: type = UserSession
    fields: tuple[str, ...] = ()
    natural: tuple[str, ...] = ()
    noun = "row"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx.customer_ids = _customer_index()
        self.stage = Stage(self.model, self.fields, natural=self.natural, direct=self.direct)

    def add(self, line: int, values: dict[str, Any]) -> None:
        self.stage.add(line, [values[name] for name in self.fields])

    def finish(self) -> None:
        if not self._dedupe(self.stage, self.noun):
            return
        staged = self.stage.count
        self.result.inserted, self.result.updated = self.stage.merge()
        self.result.direct = self.stage.direct
        self.result.unchanged = staged - self.result.inserted - self.result.updated

    def close(self) -> None:
        self.stage.drop()


class _SessionWriter(_FactWriter):
    model = UserSession
    fields = ("customer_id", "started_at", "ended_at", "pages_viewed", "actions", "external_id")
    natural = ("customer_id", "started_at")
    noun = "session (external_id, or customer and started_at)"


class _TicketWriter(_FactWriter):
    model = SupportTicket
    fields = ("customer_id", "subject", "status", "priority", "opened_at", "solved_at", "external_id")
    natural = ("customer_id", "opened_at")
    noun = "ticket (external_id, or customer and opened_at)"


class _NpsWriter(_FactWriter):
    model = NpsResponse
    fields = ("customer_id", "score", "comment", "responded_at", "external_id")
    natural = ("customer_id", "responded_at")
    noun = "answer (external_id, or customer and responded_at)"


_BILLING_FIELDS = ("customer_id", "kind", "amount", "mrr_after", "plan_after", "occurred_at", "external_id")


class _SubscriptionWriter(_FactWriter):
    """Every version is a row (keyed by the subscription's id and the version's start). The
    billing rows features read are derived: `subscription_changed` at each start (the MRR and
    plan from then on) and `subscription_cancelled` at the end of a canceled one."""

    model = Subscription
    fields = (
        "customer_id",
        "external_id",
        "plan",
        "mrr",
        "started_at",
        "ended_at",
        "status",
        "bill_period_months",
        "discount",
    )
    noun = "subscription version (external_id and start_date)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _Writer.__init__(self, *args, **kwargs)
        self.ctx.customer_ids = _customer_index()
        self.stage = Stage(Subscription, self.fields, key=("external_id", "started_at"))
        self.billing = Stage(BillingEvent, _BILLING_FIELDS, suffix="_derived")
        self.not_canceled: list[str] = []
        self.customers: set[int] = set()

    def add(self, line: int, values: dict[str, Any]) -> None:
        super().add(line, values)
        self.customers.add(values["customer_id"])
        base = f"subscription:{values['external_id']}@{values['started_at'].isoformat()}"
        customer, plan, mrr = values["customer_id"], values["plan"], values["mrr"]
        changed = BillingEvent.Kind.SUBSCRIPTION_CHANGED
        self.billing.add(line, [customer, changed, mrr, mrr, plan, values["started_at"], base])
        if values["status"] == Subscription.Status.CANCELED:
            cancelled, zero = BillingEvent.Kind.SUBSCRIPTION_CANCELLED, Decimal("0.00")
            self.billing.add(line, [customer, cancelled, zero, zero, plan, values["ended_at"], base + ":canceled"])
        else:
            self.not_canceled.append(base + ":canceled")

    def finish(self) -> None:
        if not self._dedupe(self.stage, self.noun, self.billing):
            return
        super().finish()
        self.billing.merge()
        # A version that is no longer canceled loses the cancellation derived from it.
        for start in range(0, len(self.not_canceled), 10_000):
            BillingEvent.objects.filter(external_id__in=self.not_canceled[start : start + 10_000])._raw_delete(
                "default"
            )
        # The customers' contracts (renewal date, ARR) follow from their versions, in this transaction.
        customer_contracts_refresh(customer_ids=self.customers, now=self.run.now)

    def close(self) -> None:
        self.stage.drop()
        self.billing.drop()


class _EventWriter(_Writer):
    """Product events grouped into sessions by the Segment connector's rule (the source's session
    id, else the user's — or the customer's — hour). Each session's pages are its page events,
    its actions the others (with their time). A file's events make whole sessions: importing it
    again writes the same sessions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx.customer_ids = _customer_index()
        self.postgres = connection.vendor == "postgresql"
        self.table = "history_in_events"
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {self.table} (line int8, customer_id int4, session text,"
                    " occurred_at timestamptz, page bool, action text) ON COMMIT DROP"
                )
            else:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{self.table}")
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {self.table} (line integer, customer_id integer, session text,"
                    " occurred_at datetime, page integer, action text)"
                )
        self.buffer: list[tuple] = []
        self.sessions = Stage(UserSession, _SessionWriter.fields, natural=_SessionWriter.natural)

    def add(self, line: int, values: dict[str, Any]) -> None:
        at: dt.datetime = values["occurred_at"]
        # The customer's id, not the reference as written: an external id and an e-mail of one
        # customer make one session.
        key = f"events:{values['customer_id']}/{session_key(values['user_id'] or '*', at, values['session_id'])}"
        page = values["type"].lower() in PAGE_EVENTS
        action = None
        if not page:
            entry = {"type": values["type"], "at": at.isoformat()}
            if values["value"] is not None:
                entry["value"] = values["value"]
            action = orjson.dumps(entry).decode()
        self.buffer.append((line, values["customer_id"], key, at, page, action))
        if len(self.buffer) >= 5000:
            self._flush()

    def _flush(self) -> None:
        rows, self.buffer = self.buffer, []
        if not rows:
            return
        with connection.cursor() as cursor:
            if self.postgres:
                columns = "line, customer_id, session, occurred_at, page, action"
                statement = f"COPY {self.table} ({columns}) FROM STDIN (FORMAT BINARY)"
                with cursor.cursor.copy(statement) as copy:
                    copy.set_types(["int8", "int4", "text", "timestamptz", "bool", "text"])
                    for row in rows:
                        copy.write_row(row)
            else:
                adapt = connection.ops.adapt_datetimefield_value
                cursor.executemany(
                    f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s, %s, %s)",  # noqa: S608
                    [(r[0], r[1], r[2], adapt(r[3]), int(r[4]), r[5]) for r in rows],
                )

    def finish(self) -> None:
        self._flush()
        target = self.sessions.table
        columns = "line, customer_id, started_at, ended_at, pages_viewed, actions, external_id"
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(
                    f"INSERT INTO {target} ({columns}) SELECT MIN(line), MIN(customer_id), MIN(occurred_at),"  # noqa: S608
                    " MAX(occurred_at), COUNT(*) FILTER (WHERE page),"
                    " COALESCE(jsonb_agg(action::jsonb ORDER BY occurred_at, line) FILTER (WHERE NOT page),"
                    " '[]')::text,"
                    f" session FROM {self.table} GROUP BY session"
                )
            else:
                cursor.execute(
                    f"INSERT INTO {target} ({columns}) SELECT MIN(line), MIN(customer_id), MIN(occurred_at),"  # noqa: S608
                    " MAX(occurred_at), SUM(page),"
                    " COALESCE(json_group_array(json(action)) FILTER (WHERE NOT page), '[]'),"
                    f" session FROM (SELECT * FROM {self.table} ORDER BY session, occurred_at, line) GROUP BY session"
                )
            staged = cursor.rowcount
        self.sessions.count = staged
        self.result.inserted, self.result.updated = self.sessions.merge()
        self.result.unchanged = staged - self.result.inserted - self.result.updated

    def close(self) -> None:
        self.sessions.drop()
        if not self.postgres:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{self.table}")


class _CustomerWriter(_Writer):
    """Customers are matched by external id, else by e-mail (case-insensitive), in chunks, and
    written by `customers_upsert` (the CSV import's and the data sync's too): new ones created in
    bulk, known ones whose values changed updated in one set-based statement. Only the file's
    columns are written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True).values_list("pk", "username", Lower("email"))
        index: dict[str, int] = {}
        for pk, username, email in users:
            index.setdefault(username, pk)
            if email:
                index.setdefault(email, pk)
        self.ctx.user_ids = index
        present = {("owner_id" if c == "owner" else c) for c in self.columns}
        present |= {"is_active"} if "churned_at" in present else set()
        self.present = [f for f in CUSTOMER_FIELDS if f in present]
        self.pending: list[tuple[int, dict[str, Any]]] = []
        self.seen_ids: dict[str, int] = {}
        self.seen_emails: dict[str, int] = {}
        self.rows: list[CustomerRow] = []

    def add(self, line: int, values: dict[str, Any]) -> None:
        external_id, email = values.get("external_id"), (values.get("email") or "").lower()
        for seen, key, column in ((self.seen_ids, external_id, "external_id"), (self.seen_emails, email, "email")):
            if key and key in seen:
                self._reject(line, column, f"the same {column} as line {seen[key]} (a customer appears once per file).")
                return
        if external_id:
            self.seen_ids[external_id] = line
        if email:
            self.seen_emails[email] = line
        self.pending.append((line, values))
        if len(self.pending) >= CUSTOMER_CHUNK:
            self._flush()

    def _reject(self, line: int, column: str | None, message: str) -> None:
        self.result.rejected += 1
        self.result.problem(line, column, message)

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        ids = [v["external_id"] for _, v in pending if v.get("external_id")]
        emails = [v["email"].lower() for _, v in pending if v.get("email")]
        by_id = {c.external_id: c for c in Customer.objects.filter(external_id__in=ids)} if ids else {}
        by_email = customers_by_email(emails=emails)
        churn_needed = [
            c.pk
            for _, v in pending
            if v.get("is_active") is False and v.get("churned_at") is None
            for c in [by_id.get(v.get("external_id")) or by_email.get((v.get("email") or "").lower())]
            if c
        ]
        stored_ends = _latest_subscription_ends(churn_needed)
        for line, values in pending:
            external_id, email = values.get("external_id"), (values.get("email") or "").lower()
            current = by_id.get(external_id) if external_id else None
            by_mail = by_email.get(email) if email else None
            if current is None and by_mail is not None:
                if external_id and by_mail.external_id and by_mail.external_id != external_id:
                    self._reject(
                        line, "email", f"email: belongs to the customer with external id {by_mail.external_id!r}."
                    )
                    continue
                current = by_mail
            elif current is not None and by_mail is not None and by_mail.pk != current.pk:
                self._reject(line, "email", "email: already the e-mail of another customer.")
                continue
            if values.get("is_active") is False and values.get("churned_at") is None:
                end = stored_ends.get(current.pk) if current else None
                end = end or self._run_end(external_id, email)
                if end is None:
                    self._reject(
                        line,
                        "churned_at",
                        "churned_at: required for an inactive customer (is_active is false) unless a"
                        " subscription of theirs ends; give the churn date.",
                    )
                    continue
                values["churned_at"] = end
            if current is None:
                missing = [c for c in ("name", "email", "signup_date") if not values.get(c)]
                if missing:
                    self._reject(line, missing[0], f"{', '.join(missing)}: required for a new customer.")
                    continue
                new = {k: v for k, v in values.items() if k in CUSTOMER_FIELDS}
                self.rows.append(CustomerRow(email=new.pop("email"), new=new, matched=True))
            else:
                merged = {k: v for k, v in values.items() if k in self.present}
                # A column left empty keeps a required field (name, e-mail, signup date) as it is.
                for name in ("name", "email", "signup_date"):
                    if name in merged and not merged[name]:
                        merged[name] = getattr(current, name)
                if "external_id" in merged and merged["external_id"] is None:
                    merged["external_id"] = current.external_id
                self.rows.append(CustomerRow(values=merged, customer=current, matched=True))
        if self.rows and not (self.result.rejected and self.run.on_error == "reject"):
            upserted = customers_upsert(rows=self.rows, now=timezone.now())
            self.result.inserted += len(upserted.created)
            self.result.updated += len(upserted.updated)
            self.result.unchanged += len(upserted.unchanged)
        self.rows = []

    def _run_end(self, external_id: str | None, email: str) -> dt.datetime | None:
        ends = self.run.subscription_ends()
        for ref in (external_id, email):
            if ref and ends.get(ref.lower()) is not None:
                return ends[ref.lower()]
        return None

    def finish(self) -> None:
        self._flush()


def _latest_subscription_ends(customer_ids: list[int]) -> dict[int, dt.datetime | None]:
    """The end of each customer's latest stored subscription version."""
    if not customer_ids:
        return {}
    latest = (
        Subscription.objects.filter(customer_id__in=customer_ids).values("customer_id").annotate(s=Max("started_at"))
    )
    starts = {row["customer_id"]: row["s"] for row in latest}
    ends: dict[int, dt.datetime | None] = {}
    for customer_id, started, ended in Subscription.objects.filter(customer_id__in=list(starts)).values_list(
        "customer_id", "started_at", "ended_at"
    ):
        if started == starts[customer_id]:
            ends[customer_id] = ended
    return ends


_WRITERS: dict[str, type[_Writer]] = {
    "customers": _CustomerWriter,
    "user_sessions": _SessionWriter,
    "events": _EventWriter,
    "support_tickets": _TicketWriter,
    "nps_responses": _NpsWriter,
    "subscriptions": _SubscriptionWriter,
}


def _writer(kind: str, run: _Run, ctx: Context, result: FileResult, columns: set[str], *, direct: bool) -> _Writer:
    return _WRITERS[kind](run, ctx, result, columns, direct=direct)
