"""The direct path of the history import (PostgreSQL): a first load of facts is copied straight
into the table, and stores exactly what staging and merging the same files stores; a file that
meets stored rows (in its first chunk, or only later) is merged; concurrent first imports of one
file converge. And the quick session cleaner that feeds it agrees with the exact one."""

import threading
from pathlib import Path

import pytest
from django.db import connection, connections

from customers.history.services import import_history
from customers.models import Customer, NpsResponse, SupportTicket, UserSession
from customers.tests.test_history import CUSTOMER, EXAMPLES, _counts, _write, snapshot

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the direct path is PostgreSQL's")

FACTS = ("user_sessions.csv", "events.jsonl", "support_tickets.csv", "nps_responses.csv")


def _sessions(tmp_path: Path, rows: int, *, name: str = "user_sessions.csv", start: int = 0) -> Path:
    """`rows` sessions of acme, every third without an external id (matched by customer and instant)."""
    lines = ["id,customer,started_at,ended_at,pages_viewed,actions"]
    for i in range(start, start + rows):
        minute, second = divmod(i, 60)
        at = f"2024-01-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:{second:02d}Z"
        actions = '"[""open_report"", {""type"": ""export"", ""count"": 2}]"' if i % 5 else ""
        lines.append(f"{'' if i % 3 == 0 else f's{i}'},acme,{at},,{i % 7},{actions}")
    return _write(tmp_path, name, "\n".join(lines) + "\n")


@postgres_only
@pytest.mark.django_db
def test_a_first_load_is_copied_directly_and_stores_what_the_merge_stores(tmp_path):
    direct = import_history(paths=[EXAMPLES])
    assert direct.ok
    assert {Path(f.path).name: f.direct for f in direct.files if f.kind != "customers"} == {
        "subscriptions.csv": False,  # versions and their derived billing rows: always merged
        "user_sessions.csv": True,
        "events.jsonl": False,  # sessions grouped from events: always merged
        "support_tickets.csv": True,
        "nps_responses.csv": True,
    }
    by_direct = snapshot()

    for model in (UserSession, SupportTicket, NpsResponse):
        model.objects.all().delete()
    merged = import_history(paths=[EXAMPLES / name for name in FACTS], direct=False)
    assert merged.ok and not any(f.direct for f in merged.files)
    assert snapshot() == by_direct
    assert _counts(merged) == {k: v for k, v in _counts(direct).items() if k in merged.totals()}

    again = import_history(paths=[EXAMPLES])
    assert again.ok and again.changed == 0 and not any(f.direct for f in again.files)
    assert snapshot() == by_direct


@postgres_only
@pytest.mark.django_db
def test_several_chunks_with_rows_without_ids_store_what_the_merge_stores(tmp_path):
    assert import_history(paths=[_write(tmp_path, "customers.csv", CUSTOMER)]).ok
    path = _sessions(tmp_path, 12_001)
    direct = import_history(paths=[path])
    assert (direct.files[0].direct, _counts(direct)) == (True, {"user_sessions": (12_001, 0, 0, 0)})
    by_direct = snapshot()
    UserSession.objects.all().delete()
    merged = import_history(paths=[path], direct=False)
    assert (merged.files[0].direct, _counts(merged)) == (False, {"user_sessions": (12_001, 0, 0, 0)})
    assert snapshot() == by_direct
    again = import_history(paths=[path])
    assert (again.files[0].direct, _counts(again)) == (False, {"user_sessions": (0, 0, 12_001, 0)})
    assert snapshot() == by_direct


@postgres_only
@pytest.mark.django_db
def test_a_file_whose_first_rows_are_stored_is_merged(tmp_path):
    assert import_history(paths=[_write(tmp_path, "customers.csv", CUSTOMER)]).ok
    assert import_history(paths=[_sessions(tmp_path / "", 10, name="sessions.csv")]).files[0].direct
    changed = (
        (tmp_path / "sessions.csv")
        .read_text()
        .replace(",acme,2024-01-01T00:00:01Z,,1,", ",acme,2024-01-01T00:00:01Z,,9,")
    )
    longer = _write(tmp_path, "user_sessions.csv", changed + "s900,acme,2024-02-01T00:00:00Z,,4,\n")
    result = import_history(paths=[longer])
    assert (result.files[0].direct, _counts(result)) == (False, {"user_sessions": (1, 1, 9, 0)})
    assert UserSession.objects.get(external_id="s1").pages_viewed == 9
    assert UserSession.objects.count() == 11


@postgres_only
@pytest.mark.django_db
def test_a_stored_row_met_after_rows_were_copied_rolls_back_and_merges(tmp_path):
    """The first chunk (5,000 rows) is new and copied; a row of the third chunk is stored (an
    external id, then a customer's stored row without one): the file is rolled back and merged."""
    assert import_history(paths=[_write(tmp_path, "customers.csv", CUSTOMER)]).ok
    late = _sessions(tmp_path / "", 1, name="sessions.csv", start=11_000)  # s11000, pages 3
    assert import_history(paths=[late]).files[0].direct
    stored = UserSession.objects.get()
    stored.pages_viewed = 0
    stored.save()

    path = _sessions(tmp_path, 12_001)
    result = import_history(paths=[path])
    assert (result.files[0].direct, _counts(result)) == (False, {"user_sessions": (12_000, 1, 0, 0)})
    assert result.files[0].rows == 12_001
    assert UserSession.objects.count() == 12_001
    assert UserSession.objects.get(external_id="s11000").pages_viewed == 11_000 % 7

    # A customer whose stored session has no external id: its rows without one are matched by instant.
    UserSession.objects.all().delete()
    other = "external_id,name,email,signup_date\nbeta,Beta,team@beta.example,2023-01-01\n"
    assert import_history(paths=[_write(tmp_path, "customers.csv", other)]).ok
    first = ["id,customer,started_at,pages_viewed"] + [f"s{i},acme,2024-01-01T00:00:00Z,1" for i in range(6_000)]
    rows = [*first, ",beta,2024-03-01T00:00:00Z,2", ",beta,2024-03-02T00:00:00Z,2"]
    beta = Customer.objects.get(external_id="beta")
    UserSession.objects.create(customer=beta, started_at="2024-03-01T00:00:00Z", pages_viewed=1)
    result = import_history(paths=[_write(tmp_path, "user_sessions.csv", "\n".join(rows) + "\n")])
    assert (result.files[0].direct, _counts(result)) == (False, {"user_sessions": (6_001, 1, 0, 0)})
    assert sorted(UserSession.objects.filter(customer=beta).values_list("pages_viewed", flat=True)) == [2, 2]


@postgres_only
@pytest.mark.django_db
def test_repeated_keys_in_a_first_load_are_named_as_the_merge_names_them(tmp_path):
    assert import_history(paths=[_write(tmp_path, "customers.csv", CUSTOMER)]).ok
    rows = ["id,customer,started_at", "s1,acme,2024-01-01", ",acme,2024-01-02", "s1,acme,2024-01-03"]
    rows += [",acme,2024-01-02"]
    result = import_history(paths=[_write(tmp_path, "user_sessions.csv", "\n".join(rows) + "\n")])
    assert [str(p) for p in result.files[0].problems] == [
        "user_sessions.csv, line 4, column external_id: the same session (external_id, or customer and"
        " started_at) as line 2 (a key appears once per file).",
        "user_sessions.csv, line 5, column external_id: the same session (external_id, or customer and"
        " started_at) as line 3 (a key appears once per file).",
    ]
    assert UserSession.objects.count() == 0
    skipped = import_history(paths=[Path(result.files[0].path)], on_error="skip")
    assert _counts(skipped) == {"user_sessions": (2, 0, 0, 2)}


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_imports_of_one_file_converge(tmp_path):
    assert import_history(paths=[_write(tmp_path, "customers.csv", CUSTOMER)]).ok
    path = _sessions(tmp_path, 6_000)
    results, errors = [], []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            results.append(import_history(paths=[path]).files[0])
        except Exception as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted((f.inserted, f.unchanged, f.direct, f.written) for f in results) == [
        (0, 6_000, False, True),
        (6_000, 0, True, True),
    ]
    assert UserSession.objects.count() == 6_000
    assert UserSession.objects.filter(external_id__isnull=True).count() == 2_000


CELLS = [
    {"customer": "acme", "started_at": "2024-01-01T10:00:00Z", "ended_at": "2024-01-01T10:05:00+02:00"},
    {"customer": " acme ", "started_at": "2024-01-01 10:00", "pages_viewed": "007", "actions": '["a", "b"]'},
    {"customer": "ops@ACME.example", "started_at": "2024-01-01", "external_id": " s1 ", "actions": " "},
    {"customer": "acme", "started_at": "2024-01-01", "pages_viewed": " 5 ", "actions": '[{"type": "x", "count": 2}]'},
    {"customer": "acme", "started_at": "2024-01-01", "pages_viewed": 5.0, "external_id": 12, "actions": ["a"]},
    {"customer": "acme", "started_at": "2024-01-02", "ended_at": "2024-01-01", "pages_viewed": "-1"},
    {"customer": "nobody", "started_at": "2099-01-01", "actions": '["a", ""]'},
    {"customer": "", "started_at": "", "actions": "{"},
    {"customer": "acme", "started_at": "not a time", "pages_viewed": "²", "actions": '{"a": 1}'},
]


@pytest.mark.parametrize("cells", CELLS)
def test_the_quick_session_cleaner_agrees_with_the_exact_one(cells):
    import datetime as dt
    from zoneinfo import ZoneInfo

    from customers.history.kinds import Context, RowErrors, _clean_session, clean_session

    ids = {"acme": 1, "ops@acme.example": 1}
    ctx = Context(tz=ZoneInfo("Europe/Paris"), now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    ctx.customer_ids = lambda ref: ids.get(ref) or ids.get(ref.lower())

    def outcome(clean):
        try:
            return clean(dict(cells), ctx)
        except RowErrors as errors:
            return errors.errors

    assert outcome(clean_session) == outcome(_clean_session)


@postgres_only
@pytest.mark.django_db
def test_a_file_read_twice_reports_its_bytes_once(tmp_path):
    assert import_history(paths=[_write(tmp_path, "customers.csv", CUSTOMER)]).ok
    assert import_history(paths=[_sessions(tmp_path / "", 1, name="sessions.csv", start=11_000)]).ok
    path = _sessions(tmp_path, 12_001)
    reported: list[int] = []

    class Bar:
        def update(self, n: int) -> None:
            reported.append(n)

        def rows(self, n: int, *, writing: bool = False) -> None:
            pass

        def close(self) -> None:
            pass

    result = import_history(paths=[path], progress=lambda p, size: Bar())
    assert (result.files[0].direct, _counts(result)) == (False, {"user_sessions": (12_000, 0, 1, 0)})
    assert sum(reported) == path.stat().st_size
