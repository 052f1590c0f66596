"""History import and export: the documented example book, idempotency, round trips, every bad
input of the format, no side effects, and equal features whether sessions arrive as sessions or
as raw events. Runs on the configured database (PostgreSQL or SQLite)."""

import datetime as dt
import gzip
import io
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from alerts.models import Alert
from customers.history.export import export_history
from customers.history.services import import_history
from customers.models import BillingEvent, Customer, NpsResponse, Subscription, SupportTicket, UserSession
from playbooks.models import PlaybookExecution
from predictions.data import load_tables
from predictions.ml.features import build_features
from predictions.models import ChurnPrediction, PredictionRun

EXAMPLES = Path(settings.BASE_DIR) / "docs" / "examples" / "history"
pytestmark = pytest.mark.django_db


def _import(*paths: Path, **options):
    return import_history(paths=list(paths), **options)


def _counts(result) -> dict[str, tuple[int, int, int, int]]:
    return {k: (t["inserted"], t["updated"], t["unchanged"], t["rejected"]) for k, t in result.totals().items()}


def snapshot() -> dict[str, list]:
    """Every imported table, customers named by external id (ids and bookkeeping left out)."""
    ref = dict(Customer.objects.values_list("pk", "external_id"))

    def rows(model, fields):
        return sorted(
            tuple(ref[v] if f == "customer_id" else v for f, v in zip(fields, row, strict=True))
            for row in model.objects.values_list(*fields)
        )

    customer_fields = [
        "external_id",
        "name",
        "email",
        "company",
        "plan",
        "mrr",
        "signup_date",
        "last_login",
        "nps_score",
        "support_tickets",
        "is_active",
        "churned_at",
        "owner_id",
    ]
    return {
        "customers": sorted(Customer.objects.values_list(*customer_fields)),
        "usage": sorted((c, repr(u)) for c, u in Customer.objects.values_list("external_id", "feature_usage")),
        "sessions": sorted(
            (ref[c], s, e, p, repr(a), x)
            for c, s, e, p, a, x in UserSession.objects.values_list(
                "customer_id", "started_at", "ended_at", "pages_viewed", "actions", "external_id"
            )
        ),
        "tickets": rows(
            SupportTicket, ["customer_id", "subject", "status", "priority", "opened_at", "solved_at", "external_id"]
        ),
        "nps": rows(NpsResponse, ["customer_id", "score", "comment", "responded_at", "external_id"]),
        "subscriptions": rows(
            Subscription,
            [
                "customer_id",
                "external_id",
                "plan",
                "mrr",
                "started_at",
                "ended_at",
                "status",
                "bill_period_months",
                "discount",
            ],
        ),
        "billing": rows(
            BillingEvent, ["customer_id", "kind", "amount", "mrr_after", "plan_after", "occurred_at", "external_id"]
        ),
    }


UTC = dt.UTC


def test_example_book_imports_exactly_and_a_second_import_changes_nothing():
    result = _import(EXAMPLES)
    assert result.ok
    assert _counts(result) == {
        "customers": (4, 0, 0, 0),
        "subscriptions": (5, 0, 0, 0),
        "user_sessions": (5, 0, 0, 0),
        "events": (2, 0, 0, 0),  # five events: one Acme hour (two refs, one customer), one Delta hour
        "support_tickets": (4, 0, 0, 0),
        "nps_responses": (3, 0, 0, 0),
    }
    acme = Customer.objects.get(external_id="acme")
    assert (acme.name, acme.email, acme.mrr, acme.feature_usage) == (
        "Acme Ops",
        "ops@acme.example",
        Decimal("649.00"),
        {"reports": 12, "exports": 3},
    )
    assert (acme.health_score, acme.churn_risk) == (50, Decimal("0")), "computed columns are never imported"
    beta = Customer.objects.get(external_id="beta")
    assert beta.signup_date == dt.datetime(2023, 2, 1, 8, 30, tzinfo=UTC)  # +01:00 converted
    assert (beta.is_active, beta.churned_at) == (False, dt.datetime(2024, 5, 1, tzinfo=UTC))
    gamma = Customer.objects.get(external_id="gamma")  # inactive, no churn date: its last subscription's end
    assert (gamma.is_active, gamma.churned_at) == (False, dt.datetime(2024, 6, 30, tzinfo=UTC))
    session = UserSession.objects.get(external_id="s-1001")
    assert session.actions == ["open_report", "export_report", "export_report"]
    assert UserSession.objects.get(external_id="s-1002").actions == [{"type": "run_query", "value": 3}]
    grouped = UserSession.objects.get(customer=acme, external_id__startswith="events:")
    assert (grouped.started_at, grouped.ended_at, grouped.pages_viewed) == (
        dt.datetime(2024, 6, 3, 10, 1, tzinfo=UTC),
        dt.datetime(2024, 6, 3, 10, 7, tzinfo=UTC),
        1,
    )
    assert grouped.actions == [
        {"type": "export_report", "at": "2024-06-03T10:05:00+00:00", "value": 3},
        {"type": "open_report", "at": "2024-06-03T10:07:00+00:00"},
    ]
    assert list(
        Subscription.objects.filter(external_id="sub_acme").order_by("started_at").values_list("plan", "status")
    ) == [("Basic", "ended"), ("Pro", "active")], "every version is kept"
    assert sorted(BillingEvent.objects.filter(customer=gamma).values_list("kind", "mrr_after", "occurred_at")) == [
        ("subscription_cancelled", Decimal("0.00"), dt.datetime(2024, 6, 30, tzinfo=UTC)),
        ("subscription_changed", Decimal("199.00"), dt.datetime(2023, 3, 1, tzinfo=UTC)),
    ]
    before = snapshot()

    again = _import(EXAMPLES)
    assert again.ok and again.changed == 0
    assert {k: (i, u, r) for k, (i, u, _, r) in _counts(again).items()} == dict.fromkeys(
        ["customers", "subscriptions", "user_sessions", "events", "support_tickets", "nps_responses"], (0, 0, 0)
    )
    assert _counts(again)["user_sessions"][2] == 5
    assert snapshot() == before


def test_a_dry_run_of_a_new_book_counts_what_the_import_would_write_and_writes_nothing():
    """The facts of customers the same run creates are checked against them (one transaction,
    rolled back at the end), not refused as rows of unknown customers."""
    dry = _import(EXAMPLES, dry_run=True)
    assert dry.ok
    assert _counts(dry) == {
        "customers": (4, 0, 0, 0),
        "subscriptions": (5, 0, 0, 0),
        "user_sessions": (5, 0, 0, 0),
        "events": (2, 0, 0, 0),
        "support_tickets": (4, 0, 0, 0),
        "nps_responses": (3, 0, 0, 0),
    }
    assert [f.written for f in dry.files] == [False] * 6
    for model in (Customer, Subscription, UserSession, SupportTicket, NpsResponse, BillingEvent):
        assert model.objects.count() == 0, model


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_leaves_every_table_equal(tmp_path, fmt):
    assert _import(EXAMPLES).ok
    before = snapshot()
    written = export_history(directory=tmp_path / "out", fmt=fmt)
    assert written == {
        "customers": 4,
        "subscriptions": 5,
        "user_sessions": 7,
        "support_tickets": 4,
        "nps_responses": 3,
    }
    Customer.objects.all().delete()  # cascades to every fact
    assert BillingEvent.objects.count() == 0

    result = _import(tmp_path / "out")
    assert result.ok
    assert snapshot() == before
    assert _import(tmp_path / "out").changed == 0


def test_a_newer_version_updates_only_what_changed(tmp_path):
    assert _import(EXAMPLES).ok
    tickets = (
        (EXAMPLES / "support_tickets.csv")
        .read_text()
        .replace("t-503,beta,2024-04-15,,normal,open", "t-503,beta,2024-04-15,2024-04-30,normal,solved")
    )
    (tmp_path / "support_tickets.csv").write_text(tickets)
    result = _import(tmp_path / "support_tickets.csv")
    assert _counts(result) == {"support_tickets": (0, 1, 3, 0)}
    ticket = SupportTicket.objects.get(external_id="t-503")
    assert (ticket.status, ticket.solved_at) == ("solved", dt.datetime(2024, 4, 30, tzinfo=UTC))


def test_customers_match_by_external_id_else_email_and_absent_columns_stay(tmp_path):
    assert _import(EXAMPLES / "customers.csv", EXAMPLES / "subscriptions.csv").ok
    (tmp_path / "customers.csv").write_text(
        "email,plan,mrr\nOPS@acme.example,Enterprise,1000\nnew@zeta.example,Pro,10\n"
    )
    result = _import(tmp_path / "customers.csv", on_error="skip")
    assert _counts(result) == {"customers": (0, 1, 0, 1)}
    assert result.files[0].problems[0].line == 3
    assert result.files[0].problems[0].message == "name, signup_date: required for a new customer."
    acme = Customer.objects.get(external_id="acme")
    assert (acme.plan, acme.mrr, acme.name, acme.feature_usage) == (
        "Enterprise",
        Decimal("1000.00"),
        "Acme Ops",
        {"reports": 12, "exports": 3},
    )


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


CUSTOMER = "external_id,name,email,signup_date\nacme,Acme,ops@acme.example,2023-01-01\n"
FUTURE = (dt.datetime.now(UTC) + dt.timedelta(days=3)).strftime("%Y-%m-%d")

BAD_INPUTS = [
    (
        "malformed CSV",
        "support_tickets.csv",
        'external_id,customer,opened_at,subject\nt1,acme,2024-01-01,"never closed\n',
        [(2, None, "line 2: malformed CSV (unexpected end of data).")],
    ),
    (
        "wrong number of cells",
        "support_tickets.csv",
        "external_id,customer,opened_at\nt1,acme,2024-01-01,extra\n",
        [(2, None, "the row has more cells than the header has columns.")],
    ),
    (
        "non-UTF-8",
        "nps_responses.csv",
        "customer,responded_at,score,comment\nacme,2024-01-01,5,caf\xe9\n".encode("latin-1"),
        [
            (
                None,
                None,
                "byte 57: not valid UTF-8 text (byte 0xe9). Save the file as UTF-8, or import it with"
                " --encoding latin-1 if it is Latin-1.",
            )
        ],
    ),
    (
        "duplicate key",
        "support_tickets.csv",
        "external_id,customer,opened_at\nt1,acme,2024-01-01\nt1,acme,2024-01-02\n",
        [
            (
                3,
                "external_id",
                "the same ticket (external_id, or customer and opened_at) as line 2 (a key appears once per file).",
            )
        ],
    ),
    (
        "duplicate natural key",
        "nps_responses.csv",
        "customer,responded_at,score\nacme,2024-01-01,5\nops@acme.example,2024-01-01T00:00:00Z,6\n",
        [
            (
                3,
                "external_id",
                "the same answer (external_id, or customer and responded_at) as line 2 (a key appears once per file).",
            )
        ],
    ),
    (
        "unknown customer",
        "nps_responses.csv",
        "customer,responded_at,score\nnobody,2024-01-01,5\n",
        [(2, "customer", "customer: no customer has the external id or e-mail 'nobody'.")],
    ),
    (
        "future timestamp",
        "nps_responses.csv",
        f"customer,responded_at,score\nacme,{FUTURE},5\n",
        [(2, "responded_at", f"responded_at: {FUTURE} 00:00:00 UTC is in the future.")],
    ),
    (
        "ended before started",
        "user_sessions.csv",
        "external_id,customer,started_at,ended_at\nu1,acme,2024-01-01T10:00:00Z,2024-01-01T09:00:00Z\n",
        [(2, "ended_at", "ended_at: 2024-01-01 09:00:00 is before started_at (2024-01-01 10:00:00).")],
    ),
    (
        "negative MRR",
        "subscriptions.csv",
        "external_id,customer,mrr,start_date,status\ns1,acme,-5,2024-01-01,active\n",
        [(2, "mrr", "mrr: -5 is negative.")],
    ),
    (
        "NPS outside 0-10",
        "nps_responses.csv",
        "customer,responded_at,score\nacme,2024-01-01,11\n",
        [(2, "score", "score: 11 is out of range (must be between 0 and 10).")],
    ),
    (
        "actions not a list",
        "user_sessions.jsonl",
        '{"customer": "acme", "started_at": "2024-01-01", "actions": {"type": "x"}}\n',
        [(1, "actions", "actions: must be a JSON list of actions, not dict.")],
    ),
    (
        "wrong kind of file",
        "nps_responses.csv",
        "external_id,customer,opened_at,closed_at\nt1,acme,2024-01-01,\n",
        [
            (
                1,
                None,
                "header: missing column(s) responded_at, score of a nps_responses file. It looks like a"
                " support_tickets file. Rename the columns, or give a --mapping file.",
            )
        ],
    ),
    (
        "bad JSON line",
        "nps_responses.jsonl",
        '{"customer": "acme", "responded_at": "2024-01-01", "score": 5}\n{"customer": \n',
        [(2, None, "line 2: not a JSON object (Expecting value: line 2 column 1 (char 14)).")],
    ),
]


@pytest.mark.parametrize(("case", "name", "content", "problems"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_named_and_nothing_of_the_file_is_written(tmp_path, case, name, content, problems):
    assert _import(_write(tmp_path, "customers.csv", CUSTOMER)).ok
    before = snapshot()
    result = _import(_write(tmp_path, name, content))
    (file,) = result.files
    assert not file.written and not result.ok
    assert [(p.line, p.column, p.message) for p in file.problems] == problems
    assert (file.inserted, file.updated) == (0, 0)
    assert snapshot() == before


def test_skip_imports_the_good_rows_and_reports_the_bad(tmp_path):
    assert _import(_write(tmp_path, "customers.csv", CUSTOMER)).ok
    path = _write(
        tmp_path,
        "nps_responses.csv",
        "customer,responded_at,score\nacme,2024-01-01,5\nacme,2024-02-01,12\nnobody,2024-03-01,7\n"
        "acme,2024-01-01,6\nacme,2024-04-01,9\n",
    )
    result = _import(path, on_error="skip")
    (file,) = result.files
    assert file.written and (file.inserted, file.updated, file.unchanged, file.rejected) == (2, 0, 0, 3)
    assert [(p.line, p.column) for p in file.problems] == [(3, "score"), (4, "customer"), (5, "external_id")]
    assert sorted(NpsResponse.objects.values_list("score", flat=True)) == [5, 9]


def test_bom_gzip_and_a_latin1_file_with_its_encoding(tmp_path):
    assert _import(_write(tmp_path, "customers.csv", "\ufeff" + CUSTOMER)).ok
    assert Customer.objects.get().external_id == "acme"  # the BOM did not stick to the first column
    content = "customer,responded_at,score,comment\nacme,2024-01-01,5,caf\xe9\n"
    assert _import(_write(tmp_path, "nps_responses.csv", content.encode("latin-1")), encoding="latin-1").ok
    assert NpsResponse.objects.get().comment == "café"
    path = tmp_path / "support_tickets.csv.gz"
    with gzip.open(path, "wt") as stream:
        stream.write("id,customer,opened_at\nt1,acme,2024-01-01T09:00:00\n")
    assert _import(path, tz="Europe/Paris").ok
    assert SupportTicket.objects.get().opened_at == dt.datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


def test_inactive_customer_needs_a_churn_date_or_a_subscription_that_ends(tmp_path):
    path = _write(tmp_path, "customers.csv", "id,name,email,signup_date,is_active\nx,X,x@x.example,2023-01-01,false\n")
    result = _import(path)
    assert [(p.line, p.column) for p in result.files[0].problems] == [(2, "churned_at")]
    assert Customer.objects.count() == 0


def test_a_mapping_file_renames_columns(tmp_path):
    path = _write(
        tmp_path,
        "accounts.csv",
        "Account ID,Account Name,Primary Email,signup_date,Internal score\nz1,Zeta,z@zeta.example,2024-01-01,99\n",
    )
    from customers.history.services import load_mapping

    result = _import(path, mapping=load_mapping(EXAMPLES / "mapping.json"))
    assert result.ok and result.files[0].unknown_columns == []
    assert Customer.objects.get().external_id == "z1"


def test_a_history_import_raises_no_alert_enrols_nobody_and_rescores_nobody(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert _import(EXAMPLES).ok
    assert callbacks == []
    assert Alert.objects.count() == 0
    assert PlaybookExecution.objects.count() == 0
    assert ChurnPrediction.objects.count() == 0 and PredictionRun.objects.count() == 0


def test_the_command_prints_a_summary_and_fails_on_bad_rows(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_history", str(EXAMPLES), "--no-progress", stdout=out, stderr=err)
    assert "  customers: inserted 4, updated 0, unchanged 0, rejected 0" in out.getvalue()
    assert "  events (sessions): inserted 2, updated 0, unchanged 0, rejected 0" in out.getvalue()
    bad = _write(tmp_path, "nps_responses.csv", "customer,responded_at,score\nacme,2024-01-01,11\n")
    with pytest.raises(CommandError, match="Some rows or files were not imported"):
        call_command("import_history", str(bad), "--no-progress", stdout=out, stderr=err)
    assert "nps_responses.csv, line 2, column score: score: 11 is out of range" in err.getvalue()
    dry = io.StringIO()
    good = _write(tmp_path, "support_tickets.csv", "id,customer,opened_at\nt9,acme,2024-01-01\n")
    call_command("import_history", str(good), "--dry-run", "--no-progress", stdout=dry, stderr=err)
    assert "support_tickets: inserted 1, updated 0" in dry.getvalue()
    assert not SupportTicket.objects.filter(external_id="t9").exists()


def test_a_session_book_as_sessions_or_as_events_gives_the_same_features(tmp_path):
    """Each session lies in one customer-hour; its page views and actions as raw events."""
    customers = "id,name,email,signup_date\na,A,a@a.example,2024-01-01\nb,B,b@b.example,2024-02-01\n"
    sessions = ["id,customer,started_at,ended_at,pages_viewed,actions"]
    events = ["customer,occurred_at,type"]
    start = dt.datetime(2024, 3, 1, tzinfo=UTC)
    for i in range(40):
        customer = "ab"[i % 2]
        began = start + dt.timedelta(days=i * 2 + (i % 3), hours=i % 5)
        times = [began + dt.timedelta(minutes=m) for m in range(0, 5 + i % 4)]
        pages, actions = len(times) // 2, times[len(times) // 2 :]
        sessions.append(
            f"{i},{customer},{times[0].isoformat()},{times[-1].isoformat()},{pages},"
            f'"{str(["act"] * len(actions)).replace(chr(39), chr(34) * 2)}"'
        )
        events += [f"{customer},{t.isoformat()},page" for t in times[:pages]]
        events += [f"{customer},{t.isoformat()},act" for t in actions]
    book = tmp_path / "book"
    book.mkdir()
    _write(book, "customers.csv", customers)
    assert _import(book / "customers.csv").ok
    as_of = pd.Timestamp("2024-06-15", tz="UTC")

    assert _import(_write(tmp_path, "user_sessions.csv", "\n".join(sessions) + "\n")).ok
    from_sessions = build_features(load_tables(), as_of)
    UserSession.objects.all().delete()
    assert _import(_write(tmp_path, "events.csv", "\n".join(events) + "\n")).ok
    assert UserSession.objects.count() == 40
    from_events = build_features(load_tables(), as_of)
    pd.testing.assert_frame_equal(from_sessions, from_events)
    assert from_sessions["sessions_90d"].sum() == 32  # the 8 before March 17 are older than 90 days


def test_examples_directory_is_what_the_doc_shows():
    names = sorted(p.name for p in EXAMPLES.iterdir())
    assert names == [
        "customers.csv",
        "events.jsonl",
        "mapping.json",
        "nps_responses.csv",
        "subscriptions.csv",
        "support_tickets.csv",
        "user_sessions.csv",
    ]


def test_a_parquet_export_is_typed_and_a_broken_parquet_file_is_refused(tmp_path):
    import pyarrow.parquet as pq

    assert _import(EXAMPLES).ok
    export_history(directory=tmp_path / "out", fmt="parquet")
    schema = pq.read_schema(tmp_path / "out" / "subscriptions.parquet")
    assert {name: str(schema.field(name).type) for name in ("mrr", "start_date", "bill_period_months", "customer")} == {
        "mrr": "decimal128(12, 2)",
        "start_date": "timestamp[us, tz=UTC]",
        "bill_period_months": "int64",
        "customer": "string",
    }
    result = _import(_write(tmp_path, "nps_responses.parquet", b"PAR1 not really"))
    assert result.files[0].fatal.startswith("not a readable Parquet file (")
    assert NpsResponse.objects.count() == 3  # the example book's, nothing more


def test_a_file_of_several_chunks_imports_whole_and_a_late_broken_line_writes_nothing(tmp_path):
    """More rows than one chunk (PostgreSQL: COPYs overlap with parsing); a malformed line after
    several chunks were sent still leaves nothing written."""
    assert _import(_write(tmp_path, "customers.csv", CUSTOMER)).ok
    lines = ["id,customer,started_at,pages_viewed"]
    lines += [f"s{i},acme,2024-01-01T00:00:{i % 60:02d}Z,{i % 7}" for i in range(12_001)]
    good = _write(tmp_path / "", "user_sessions.csv", "\n".join(lines) + "\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    _write(broken, "user_sessions.csv", "\n".join([*lines, 'x,acme,"2024-01-01']) + "\n")

    result = _import(broken / "user_sessions.csv")
    assert result.files[0].fatal == "line 12003: malformed CSV (unexpected end of data)."
    assert UserSession.objects.count() == 0

    assert _counts(_import(good)) == {"user_sessions": (12_001, 0, 0, 0)}
    assert UserSession.objects.count() == 12_001
    assert sum(UserSession.objects.values_list("pages_viewed", flat=True)) == sum(i % 7 for i in range(12_001))
    assert _counts(_import(good)) == {"user_sessions": (0, 0, 12_001, 0)}
