"""One writer of the customers' tables: the data sync, the CSV import and the history import match a
customer by e-mail the same way (`customers.history.apply.customers_by_email`) and create and
update customers through one upsert (`customers_upsert`), and the sync's applier is the customers
app's own, fed by an integration's ledger of external records."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.history.apply import CustomerRow, customer_ids_by_email, customers_by_email, customers_upsert
from customers.history.canonical import CustomerRef, CustomerUpserted, TicketChanged
from customers.history.services import import_history
from customers.models import Customer, SupportTicket
from integrations.models import ExternalRecord, Integration
from integrations.pipeline import apply_events

pytestmark = pytest.mark.django_db
V1 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def integration():
    return Integration.objects.create(name="CRM", type="crm", status="connected", config={"provider": "generic"})


def test_customers_by_email_matches_whatever_the_case_and_only_those(make_customer):
    ada = make_customer(email="Ada@Example.com")
    bob = make_customer(email="bob@example.com")
    make_customer(email="carol@example.com")

    found = customers_by_email(emails=["ADA@example.COM", "bob@EXAMPLE.com", "nobody@example.com"])

    assert {key: c.pk for key, c in found.items()} == {"ada@example.com": ada.pk, "bob@example.com": bob.pk}
    assert customer_ids_by_email(emails=["ada@EXAMPLE.com"]) == {"ada@example.com": ada.pk}
    assert customers_by_email(emails=[]) == {} and customer_ids_by_email(emails=[]) == {}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
def test_customers_by_email_locks_in_id_order_when_asked(make_customer):
    make_customer(email="ada@example.com")
    with CaptureQueriesContext(connection) as queries:
        customers_by_email(emails=["ada@example.com"], lock=True)
    (sql,) = [q["sql"] for q in queries.captured_queries]
    assert sql.endswith('ORDER BY "customers"."id" ASC FOR UPDATE')


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the statement count is PostgreSQL's")
def test_customers_upsert_creates_one_customer_per_email_and_rewrites_only_the_changed(make_customer):
    ada = make_customer(email="Ada@Example.com", plan="Basic")
    bob = make_customer(email="bob@example.com", plan="Pro")
    bob_touched = Customer.objects.get(pk=bob.pk).updated_at
    now = timezone.now()
    rows = [
        CustomerRow(email="ADA@example.com", values={"plan": "Scale"}),
        CustomerRow(email="bob@EXAMPLE.com", values={"plan": "Pro"}),
        CustomerRow(email="zed@example.com", new={"name": "Zed", "signup_date": now}),
        CustomerRow(email="Zed@Example.com", new={"name": "Second", "signup_date": now}),
        CustomerRow(email="amy@example.com", new={"name": "Amy", "signup_date": now}, values={"plan": "Pro"}),
    ]

    with CaptureQueriesContext(connection) as queries:
        upserted = customers_upsert(rows=rows, now=now)

    # One read to match, one insert, one update.
    assert len(queries.captured_queries) == 3
    # New customers in one order (by e-mail) whatever the rows' order; the first row of an e-mail wins.
    assert [c.email for c in upserted.created] == ["amy@example.com", "zed@example.com"]
    assert rows[2].customer is rows[3].customer and rows[3].created and rows[3].customer.name == "Zed"
    assert ([c.pk for c in upserted.updated], [c.pk for c in upserted.unchanged]) == ([ada.pk], [bob.pk])
    assert rows[0].customer.pk == ada.pk and not rows[0].created
    stored = {c.email: (c.name, c.plan, c.updated_at) for c in Customer.objects.all()}
    assert stored["Ada@Example.com"][1:] == ("Scale", now)
    assert stored["bob@example.com"][2] == bob_touched  # nothing changed: not rewritten
    assert stored["amy@example.com"][:2] == ("Amy", "Pro") and stored["zed@example.com"][0] == "Zed"
    assert len(stored) == 4


def _csv(api_for, user, text: str) -> dict:
    response = api_for(user).post("/api/import/customers/csv", {"csv": text}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def test_sync_csv_and_history_import_update_the_one_customer_an_email_names(
    make_customer, manager, api_for, integration, tmp_path: Path
):
    ada = make_customer(email="Ada@Example.com", name="Ada", plan="Basic", owner=manager)

    # The data sync: a CRM account naming the e-mail in another case.
    result = apply_events(
        integration_id=integration.pk,
        events=[CustomerUpserted(external_id="crm-1", version=V1, email="ada@EXAMPLE.com", plan="Pro")],
    )
    assert (result.created, result.updated) == (0, 1)
    record = ExternalRecord.objects.get(integration=integration, kind="customer", external_id="crm-1")
    assert (record.local_id, record.customer_id) == (ada.pk, ada.pk)
    ada.refresh_from_db()
    # The sync's account is the source of the e-mail as it writes it.
    assert (ada.plan, ada.email) == ("Pro", "ada@EXAMPLE.com")

    # The CSV import: matched by e-mail, the stored e-mail kept as it is.
    assert _csv(api_for, manager, "name,email,plan\nAda CSV,ADA@example.com,Enterprise\n") == {
        "success": True,
        "created": 0,
        "updated": 1,
        "errors": [],
        "ignoredColumns": [],
    }
    ada.refresh_from_db()
    assert (ada.name, ada.plan, ada.email) == ("Ada CSV", "Enterprise", "ada@EXAMPLE.com")

    # The history import: no external id in the file, so the e-mail matches.
    (tmp_path / "customers.csv").write_text("email,plan,mrr\nAda@example.com,Scale,750\n")
    history = import_history(paths=[tmp_path / "customers.csv"])
    assert history.ok and history.files[0].updated == 1 and history.files[0].inserted == 0
    ada.refresh_from_db()
    assert (ada.plan, ada.mrr, ada.email) == ("Scale", Decimal("750.00"), "Ada@example.com")

    assert Customer.objects.count() == 1

    # A fact the sync reports by e-mail (another case again) lands on the same customer.
    apply_events(
        integration_id=integration.pk,
        events=[
            TicketChanged(
                external_id="t-1",
                customer=CustomerRef(email="ADA@EXAMPLE.COM"),
                version=V1,
                subject="Export fails",
                status="open",
            )
        ],
    )
    assert list(SupportTicket.objects.values_list("customer_id", "external_id")) == [(ada.pk, f"{integration.pk}:t-1")]
    ada.refresh_from_db()
    assert ada.support_tickets == 1


def test_a_new_email_creates_one_customer_once_through_each_path(manager, api_for, integration, tmp_path: Path):
    event = CustomerUpserted(external_id="crm-9", version=V1, email="new@sync.example", name="Synced")
    assert apply_events(integration_id=integration.pk, events=[event]).created == 1
    again = apply_events(integration_id=integration.pk, events=[event])
    assert (again.created, again.updated, again.skipped) == (0, 0, 1)

    assert _csv(api_for, manager, "name,email\nImported,new@csv.example\n")["created"] == 1
    assert _csv(api_for, manager, "name,email\nImported,NEW@csv.example\n")["created"] == 0

    signup = timezone.now().date().isoformat()
    (tmp_path / "customers.csv").write_text(f"name,email,signup_date\nHistoric,new@history.example,{signup}\n")
    assert import_history(paths=[tmp_path / "customers.csv"]).files[0].inserted == 1
    (tmp_path / "customers.csv").write_text(f"name,email,signup_date\nHistoric,NEW@history.example,{signup}\n")
    assert import_history(paths=[tmp_path / "customers.csv"]).files[0].inserted == 0

    # The history import writes the e-mail as its file spells it; the CSV import keeps the stored one.
    assert sorted(Customer.objects.values_list("email", "name")) == [
        ("NEW@history.example", "Historic"),
        ("new@csv.example", "Imported"),
        ("new@sync.example", "Synced"),
    ]

    # And the sync then finds the customers the imports created, by their e-mail.
    found = apply_events(
        integration_id=integration.pk,
        events=[CustomerUpserted(external_id="crm-10", version=V1, email="New@Csv.example", plan="Pro")],
    )
    assert (found.created, found.updated) == (0, 1)
    assert Customer.objects.get(email="New@Csv.example").plan == "Pro"
