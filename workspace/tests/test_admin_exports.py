"""Exports of the admin's lists and reports (core/exports.py), and the engine's rows,
which the admin shows read-only except through their actions.

A list's export is the changelist as filtered, searched and scoped: CSV parsed back and XLSX read
back with openpyxl hold exactly the rows the changelist holds, a CSM's only their portfolio, with
no cell a spreadsheet would run as a formula, in a number of queries that does not grow with rows.
"""

import asyncio
import csv
import datetime as dt
import io
import warnings
from decimal import Decimal

import pytest
from channels.testing import HttpCommunicator
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from alerts.models import NotificationDelivery
from churnshield.asgi import application
from customers.models import Customer
from integrations.models import Integration, SyncRun, WebhookEvent
from interventions.models import Intervention
from playbooks.models import PlaybookExecution
from playbooks.services import enrol, playbook_create
from predictions.selectors import champion_risk_bands
from tests.test_admin_queries import SINGLETONS, make_row

CUSTOMER_HEADER = [
    "Name",
    "Company",
    "Plan",
    "MRR",
    "Health score",
    "Churn risk",
    "Risk level",
    "Open work",
    "Owner",
    "Is active",
    "Last login",
]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(body(response).decode("utf-8-sig"))))


def xlsx_rows(response) -> dict[str, list[list]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    workbook = load_workbook(io.BytesIO(body(response)), read_only=True)
    return {sheet.title: [list(row) for row in sheet.iter_rows(values_only=True)] for sheet in workbook.worksheets}


def export_url(model, fmt: str, query: str = "") -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_export_{fmt}")
    return f"{url}?{query}" if query else url


@pytest.fixture
def book(make_customer, csm, other_csm):
    login = timezone.make_aware(dt.datetime(2026, 3, 1, 9, 30))
    mine = [
        make_customer(
            owner=csm, name="Acme North", company="Acme", plan="Pro", mrr=Decimal("1200.50"), last_login=login
        ),
        make_customer(owner=csm, name="Acme South", company="Acme", plan="Basic", last_login=login),
        make_customer(owner=csm, name="Globex", company="Globex", plan="Pro", last_login=login),
    ]
    theirs = [
        make_customer(owner=other_csm, name="Acme West", company="Acme", plan="Pro", last_login=login),
        make_customer(owner=None, name="Acme Unassigned", company="Acme", plan="Pro", last_login=login),
    ]
    for customer in mine + theirs:
        Intervention.objects.create(customer=customer, type="call", notes="n")
    return {"mine": mine, "theirs": theirs}


# --- Lists ----------------------------------------------------------------------------------------


def test_the_changelist_offers_both_exports_of_the_list_as_filtered(book, manager):
    page = client_for(manager).get(reverse("admin:customers_customer_changelist"), {"q": "Acme", "plan": "Pro"})
    html = page.content.decode()
    assert f'href="{export_url(Customer, "csv", "q=Acme&amp;plan=Pro")}"' in html
    assert f'href="{export_url(Customer, "xlsx", "q=Acme&amp;plan=Pro")}"' in html


def test_a_filtered_searched_export_holds_exactly_the_changelist_rows(book, manager):
    client = client_for(manager)
    query = "q=Acme&plan=Pro&o=1"  # searched, filtered, sorted by name
    page = client.get(f"{reverse('admin:customers_customer_changelist')}?{query}")
    shown = [customer.name for customer in page.context["cl"].result_list]
    assert shown == ["Acme North", "Acme Unassigned", "Acme West"]

    rows = csv_rows(client.get(export_url(Customer, "csv", query)))
    assert rows[0] == CUSTOMER_HEADER
    assert [row[0] for row in rows[1:]] == shown
    north = rows[1]
    owner = book["mine"][0].owner
    assert north == [
        "Acme North",
        "Acme",
        "Pro",
        "1200.50",
        "70",
        "0.2500",  # the probability itself, where the list shows "25.0%"
        "low",
        "1",
        owner.get_full_name(),
        "yes",
        "2026-03-01 09:30:00+00:00",
    ]

    sheets = xlsx_rows(client.get(export_url(Customer, "xlsx", query)))
    [(title, sheet)] = sheets.items()
    assert title == "customers-" + f"{timezone.localdate():%Y-%m-%d}"
    assert sheet[0] == CUSTOMER_HEADER
    assert [row[0] for row in sheet[1:]] == shown
    assert sheet[1][3:8] == [1200.5, 70, 0.25, "low", 1]  # numbers stay numbers
    assert sheet[1][10] == dt.datetime(2026, 3, 1, 9, 30)


def test_the_export_is_named_after_the_model_and_the_day(book, manager):
    response = client_for(manager).get(export_url(Intervention, "xlsx"))
    day = f"{timezone.localdate():%Y-%m-%d}"
    assert response["Content-Disposition"] == f'attachment; filename="interventions-{day}.xlsx"'


def test_a_csm_exports_only_their_portfolio(book, csm):
    client = client_for(csm)
    names = sorted(c.name for c in book["mine"])
    assert sorted(row[0] for row in csv_rows(client.get(export_url(Customer, "csv")))[1:]) == names
    assert sorted(row[0] for row in xlsx_rows(client.get(export_url(Customer, "xlsx"))).popitem()[1][1:]) == names
    # Rows hanging off customers too: the intervention list's customer column.
    interventions = csv_rows(client.get(export_url(Intervention, "csv", "q=Acme")))
    assert sorted(row[1] for row in interventions[1:]) == ["Acme North (Acme)", "Acme South (Acme)"]


def test_a_csm_cannot_export_a_list_they_may_not_open(book, csm):
    assert client_for(csm).get(export_url(Integration, "csv")).status_code == 403
    assert client_for(csm).get(export_url(WebhookEvent, "xlsx")).status_code == 403


def test_an_unknown_filter_is_refused_and_only_get_exports(book, manager):
    client = client_for(manager)
    assert client.get(export_url(Customer, "csv", "no_such_field=1")).status_code == 400
    assert client.post(export_url(Customer, "csv")).status_code == 405


FORMULAS = ['=HYPERLINK("http://x")', "+1+2", "-3+4", "@SUM(A1)", "\tTab", "\rReturn"]


def test_cells_that_would_run_as_formulas_are_quoted(make_customer, manager):
    for n, text in enumerate(FORMULAS):
        make_customer(name=text, company=f"Formula {n}")
    client = client_for(manager)
    query = "q=Formula&o=2"  # by company, so in the order made
    rows = csv_rows(client.get(export_url(Customer, "csv", query)))
    assert [row[0] for row in rows[1:]] == ["'" + text for text in FORMULAS]
    sheet = xlsx_rows(client.get(export_url(Customer, "xlsx", query))).popitem()[1]
    # XML reads a stored carriage return back as a line feed; the quote in front is what counts.
    assert [row[0] for row in sheet[1:]] == ["'" + text.replace("\r", "\n") for text in FORMULAS]
    workbook = load_workbook(io.BytesIO(body(client.get(export_url(Customer, "xlsx", query)))))
    assert {cell.data_type for cell in workbook.active["A"]} == {"s"}  # text, no formula


def _registered():
    items = [(m, a) for m, a in admin.site._registry.items() if m._meta.label not in SINGLETONS]
    return sorted(items, key=lambda item: item[0]._meta.label)


def _export_queries(client: Client, model) -> tuple[int, int]:
    champion_risk_bands.forget()  # read again after a few seconds: the same read in both counts
    with CaptureQueriesContext(connection) as queries:
        response = client.get(export_url(model, "csv"))
        rows = csv_rows(response)
    return len(queries), len(rows) - 1


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "model_admin"), _registered(), ids=lambda value: getattr(value, "__name__", ""))
def test_an_export_costs_the_same_queries_for_3_rows_as_for_30(model, model_admin):
    superuser = get_user_model().objects.create_superuser(username="root", email="root@example.com", password="x")
    client = Client()
    client.force_login(superuser)
    existing = model._default_manager.count()
    for _ in range(3):
        make_row(model)
    client.get(export_url(model, "csv"))  # warm caches (content types, permissions)
    few, exported_few = _export_queries(client, model)
    for _ in range(27):
        make_row(model)
    many, exported_many = _export_queries(client, model)
    assert (exported_few, exported_many) == (existing + 3, existing + 30)
    assert many == few, f"{model._meta.label}: {few} queries for {exported_few} rows, {many} for {exported_many}"


def test_an_export_of_the_whole_book_stays_within_a_few_queries(make_customer, manager, django_assert_max_num_queries):
    for n in range(60):
        make_customer(name=f"Bulk {n}")
    client = client_for(manager)
    # Session, user, roles, permissions, the owner filter's choices, the rows, the risk thresholds.
    with django_assert_max_num_queries(10):
        assert len(xlsx_rows(client.get(export_url(Customer, "xlsx"))).popitem()[1]) == 61


# --- Reports --------------------------------------------------------------------------------------


def test_the_playbook_report_downloads_its_tables(book, manager):
    client = client_for(manager)
    page = client.get(reverse("admin:playbooks_playbook_report"))
    assert 'href="/admin/playbooks/playbook/report/?format=xlsx"' in page.content.decode()
    tables = page.context["tables"]
    sheets = xlsx_rows(client.get(reverse("admin:playbooks_playbook_report"), {"format": "xlsx"}))
    assert list(sheets) == ["By playbook", "By intervention type"]
    assert sheets["By playbook"][0] == tables[0]["headers"]
    assert [row[0] for row in sheets["By playbook"][1:]] == [row[0] for row in tables[0]["rows"]]
    rows = csv_rows(client.get(reverse("admin:playbooks_playbook_report"), {"format": "csv"}))
    assert rows[1] == ["By playbook", *tables[0]["headers"]]
    assert {row[0] for row in rows[1:]} == {"By playbook", "By intervention type"}


def test_intervention_analytics_page_and_its_export_count_the_users_scope(book, csm, manager):
    Intervention.objects.filter(customer__in=book["mine"][:1]).update(
        status=Intervention.Status.COMPLETED, outcome=Intervention.Outcome.SUCCEEDED, completed_at=timezone.now()
    )
    url = reverse("admin:interventions_intervention_analytics")
    changelist = client_for(csm).get(reverse("admin:interventions_intervention_changelist"))
    assert f'href="{url}"' in changelist.content.decode()
    for user, total in ((csm, 3), (manager, 5)):
        sheets = xlsx_rows(client_for(user).get(url, {"format": "xlsx"}))
        assert list(sheets) == ["Overall", "By intervention type", "Insights"]
        assert sheets["Overall"][0] == ["Measure", "Value", "Unit", "How it is counted"]
        assert sheets["Overall"][1][:2] == ["Interventions", total]
        assert sheets["Overall"][3][:3] == ["Success rate", 100, "%"]  # the one completed succeeded
        assert sheets["By intervention type"][1][:3] == ["call", total, 1]


def test_intervention_analytics_figures_link_to_the_rows_they_count(book, csm):
    """Each count on the page says what it counts and leads to those rows: following the link
    shows as many rows as the figure (in the user's scope)."""
    Intervention.objects.filter(customer__in=book["mine"][:2]).update(
        status=Intervention.Status.COMPLETED, outcome=Intervention.Outcome.SUCCEEDED, completed_at=timezone.now()
    )
    # A logged call is history, not retention work: neither the figures nor their rows count it.
    Intervention.objects.create(
        customer=book["mine"][0], type="call", activity="call", status=Intervention.Status.COMPLETED
    )
    client = client_for(csm)
    page = client.get(reverse("admin:interventions_intervention_analytics"))
    overall = {row[0]: row for row in page.context["tables"][0]["rows"]}
    assert overall["Success rate"][1]["text"] == "100 %"
    assert "of all completed" in overall["Success rate"][2]
    for label in ("Interventions", "Completed"):
        figure = overall[label][1]
        assert client.get(figure["url"]).context["cl"].result_count == int(figure["text"]) > 0
    completed = overall["Completed"][1]
    call = page.context["tables"][1]["rows"][0][0]
    assert call["text"] == "call" and client.get(call["url"]).context["cl"].result_count == 3
    assert f'<a href="{completed["url"]}">' in page.content.decode().replace("&amp;", "&")


def test_the_renewal_forecast_downloads_as_xlsx(book, manager):
    url = reverse("admin:customers_renewal_forecast_export")
    sheet = xlsx_rows(client_for(manager).get(url, {"format": "xlsx"})).popitem()[1]
    assert sheet[0][:3] == ["table", "month", "customers_renewing"]
    assert csv_rows(client_for(manager).get(url))[0][:3] == ["table", "month", "customers_renewing"]


# --- Engine rows ----------------------------------------------------------------------------------


@pytest.fixture
def engine_rows(book, django_capture_on_commit_callbacks):
    playbook = playbook_create(data={"name": "Save", "steps": [{"type": "wait", "duration": "30d"}]})
    with django_capture_on_commit_callbacks(execute=False):
        enrol(playbook=playbook, customer_ids=[book["mine"][0].pk], trigger="manual", use_holdout=False)
    integration = Integration.objects.create(name="Stripe", type=Integration.Type.PAYMENT)
    event = WebhookEvent.objects.create(
        integration=integration,
        provider="stripe",
        event_id="evt_1",
        event_type="invoice.payment_failed",
        body="{}",
        received_at=timezone.now(),
        next_attempt_at=timezone.now(),
        status=WebhookEvent.Status.DEAD,
        attempts=5,
    )
    return {
        PlaybookExecution: PlaybookExecution.objects.get(playbook=playbook),
        WebhookEvent: event,
        SyncRun: make_row(SyncRun, integration=integration),
        NotificationDelivery: make_row(NotificationDelivery),
    }


ENGINE_MODELS = [PlaybookExecution, WebhookEvent, SyncRun, NotificationDelivery]


@pytest.mark.parametrize("model", ENGINE_MODELS, ids=lambda m: m.__name__)
def test_engine_rows_refuse_add_change_and_delete(engine_rows, admin_user, model):
    client = client_for(admin_user)
    obj = engine_rows[model]
    info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    before = model.objects.filter(pk=obj.pk).values().get()
    assert client.get(reverse(f"{info}_change", args=[obj.pk])).status_code == 200  # still readable
    assert (
        client.post(reverse(f"{info}_change", args=[obj.pk]), {"status": "failed", "_save": "Save"}).status_code == 403
    )
    assert client.post(reverse(f"{info}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    assert client.post(reverse(f"{info}_add"), {}).status_code == 403
    bulk_delete = {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
    client.post(reverse(f"{info}_changelist"), bulk_delete)
    assert model.objects.filter(pk=obj.pk).values().get() == before


def test_cancel_and_retry_an_execution_from_its_list(engine_rows, csm, viewer):
    execution = engine_rows[PlaybookExecution]
    changelist = reverse("admin:playbooks_playbookexecution_changelist")
    client_for(viewer).post(changelist, {"action": "cancel_executions", "_selected_action": [execution.pk]})
    execution.refresh_from_db()
    assert execution.status == PlaybookExecution.Status.RUNNING  # a viewer has no actions
    client_for(csm).post(changelist, {"action": "cancel_executions", "_selected_action": [execution.pk]})
    execution.refresh_from_db()
    assert execution.status == PlaybookExecution.Status.CANCELLED
    client_for(csm).post(changelist, {"action": "retry_executions", "_selected_action": [execution.pk]})
    execution.refresh_from_db()
    assert execution.status == PlaybookExecution.Status.RUNNING


def test_replay_a_dead_webhook_event_from_its_list(engine_rows, manager, viewer, django_capture_on_commit_callbacks):
    event = engine_rows[WebhookEvent]
    changelist = reverse("admin:integrations_webhookevent_changelist")
    client_for(viewer).post(changelist, {"action": "replay", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert (event.status, event.attempts) == (WebhookEvent.Status.DEAD, 5)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        client_for(manager).post(changelist, {"action": "replay", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert (event.status, event.attempts) == (WebhookEvent.Status.RECEIVED, 0)
    assert len(enqueued) == 1  # the drain of its integration, after commit


# --- Under ASGI -----------------------------------------------------------------------------------


def _asgi_get(user, path: str) -> dict:
    session = SessionStore()
    session.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[-1]})
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()
    headers = [(b"host", b"testserver"), (b"cookie", cookie)]
    communicator = HttpCommunicator(application, "GET", path, headers=headers)

    async def read() -> dict:
        # Django ends a stream with a body message without "body", which get_response() refuses.
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(30)
        parts = []
        while True:
            message = await communicator.receive_output(30)
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                return {"status": start["status"], "body": b"".join(parts), "messages": len(parts)}

    return asyncio.run(read())


@pytest.mark.django_db(transaction=True)
def test_under_asgi_the_export_streams_without_being_read_into_memory_first(make_customer, make_user):
    """Django reads a sync stream into a list before sending a byte under ASGI (and warns); the
    export hands it an async stream fed from the request's own thread."""
    manager = make_user("manager")
    for n in range(450):  # more than one batch handed to the event loop
        make_customer(name=f"Streamed {n}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = _asgi_get(manager, export_url(Customer, "csv", "q=Streamed"))
    assert response["status"] == 200
    rows = list(csv.reader(io.StringIO(response["body"].decode("utf-8-sig"))))
    assert sorted(row[0] for row in rows[1:]) == sorted(f"Streamed {n}" for n in range(450))
    assert [str(w.message) for w in caught if "synchronous iterators" in str(w.message)] == []
