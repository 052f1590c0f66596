"""The Django admin for CSMs: every model registered, roles and portfolio scoping as in the API,
actions, bounded queries, and no secret from an integration's config ever rendered."""

import datetime as dt
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from integrations.models import Integration, SyncRun, WebhookEvent
from interventions.models import Intervention
from playbooks.models import Playbook, PlaybookExecution
from predictions.models import ChurnCause, ChurnPrediction, ModelVersion, PortfolioSnapshot, PredictionRun
from predictions.selectors import cause_impact, count_latest_causes
from tests.helpers import make_prediction

SECRET = "sk_live_SECRET123"
ALL_MODELS = [
    Customer,
    UserSession,
    SupportTicket,
    NpsResponse,
    BillingEvent,
    Intervention,
    Alert,
    Integration,
    ChurnPrediction,
    ChurnCause,
    PortfolioSnapshot,
    Playbook,
    PlaybookExecution,
]
# Book-wide plumbing: admins, managers and viewers read it; CSMs cannot open it.
PLUMBING = [Integration, SyncRun, WebhookEvent, PredictionRun, ModelVersion]
# Written by the scoring batch or the playbook engine: viewable, never added or edited in the admin.
ENGINE_WRITTEN = {ChurnPrediction, PortfolioSnapshot, PlaybookExecution}
# Everything hanging off one customer, with how to reach it in `world`.
PORTFOLIO_MODELS = [
    Customer,
    UserSession,
    SupportTicket,
    NpsResponse,
    BillingEvent,
    Intervention,
    Alert,
    ChurnPrediction,
    PlaybookExecution,
]


def url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


class _FormParser(HTMLParser):
    """Collects what a browser would submit for one <form id=...> (inputs, selects, textareas)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.data: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.inside = attributes.get("id") == self.form_id
            return
        if not self.inside:
            return
        name = attributes.get("name")
        if tag == "input" and name:
            kind = attributes.get("type", "text")
            if kind in ("submit", "button", "file", "image"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in attributes:
                    self.data.append((name, attributes.get("value") or "on"))
                return
            self.data.append((name, attributes.get("value") or ""))
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            self.data.append((self._select, attributes.get("value") or ""))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.data.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def form_data(response, model: type[Model]) -> dict:
    """The change form as a browser would post it (plus the Save button)."""
    parser = _FormParser(f"{model._meta.model_name}_form")
    parser.feed(response.content.decode())
    data = dict(parser.data)
    assert data, "change form not found"
    data["_save"] = "Save"
    return data


def count_queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(queries)


@pytest.fixture
def add_facts():
    """Create one of every customer-scoped row for a customer; returns them by model."""

    def add(customer: Customer, playbook: Playbook) -> dict[type[Model], Model]:
        now = timezone.now()
        return {
            Customer: customer,
            UserSession: UserSession.objects.create(customer=customer, started_at=now, pages_viewed=3, actions=["a"]),
            SupportTicket: SupportTicket.objects.create(customer=customer, subject="Export broken", opened_at=now),
            NpsResponse: NpsResponse.objects.create(customer=customer, score=6, responded_at=now),
            BillingEvent: BillingEvent.objects.create(
                customer=customer, kind=BillingEvent.Kind.PAYMENT_SUCCEEDED, amount=Decimal(10), occurred_at=now
            ),
            Intervention: Intervention.objects.create(customer=customer, type="call"),
            Alert: Alert.objects.create(customer=customer, title=f"Risk up for {customer.name}", message="m"),
            ChurnPrediction: ChurnPrediction.objects.create(
                customer=customer, churn_probability=Decimal("0.3"), risk_level="low", prediction_date=now
            ),
            PlaybookExecution: PlaybookExecution.objects.create(playbook=playbook, customer=customer, started_at=now),
        }

    return add


@pytest.fixture
def world(csm, other_csm, make_customer, add_facts):
    """Two customers owned by `csm`, one by `other_csm`, one unassigned, each with one of every fact."""
    playbook = Playbook.objects.create(name="Onboarding rescue", steps=[{"action": "call"}])
    mine = [make_customer(owner=csm), make_customer(owner=csm)]
    theirs = make_customer(owner=other_csm)
    unassigned = make_customer(owner=None)
    today = timezone.now().date()
    PortfolioSnapshot.objects.create(date=today, owner=csm, active_customers=2, risk_sum=0.5)
    PortfolioSnapshot.objects.create(date=today, owner=other_csm, active_customers=1, risk_sum=0.25)
    ChurnCause.objects.create(cause="Low adoption", count=3, percent=30)
    integration = Integration.objects.create(
        name="Stripe", type=Integration.Type.PAYMENT, config={"api_key": SECRET, "region": "eu"}
    )
    return {
        "mine": [add_facts(customer, playbook) for customer in mine],
        "theirs": add_facts(theirs, playbook),
        "unassigned": add_facts(unassigned, playbook),
        "playbook": playbook,
        "integration": integration,
        "book_alert": Alert.objects.create(title="Sync failed", message="CRM sync failed"),
    }


def make_plumbing_row(world: dict, model: type[Model]) -> Model:
    now = timezone.now()
    theirs = world["theirs"][Customer]
    if model is Integration:
        return world["integration"]
    if model is SyncRun:
        return SyncRun.objects.create(integration=world["integration"], trigger="manual", started_at=now)
    if model is WebhookEvent:
        return WebhookEvent.objects.create(
            integration=world["integration"],
            provider="stripe",
            event_id="evt_1",
            body=f'{{"email": "{theirs.email}"}}',
            received_at=now,
            next_attempt_at=now,
        )
    if model is PredictionRun:
        version = ModelVersion.objects.create(version="v0", kind="rules", trained_at=now, as_of=now)
        return PredictionRun.objects.create(
            run_key="batch:today", model_version=version, started_at=now, customers_scored=953
        )
    return ModelVersion.objects.create(version="v1", kind="rules", trained_at=now, as_of=now)


def _changelist_ids(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


# --- Every page opens for the roles that may see it --------------------------------------------


@pytest.mark.parametrize("role", ["admin_user", "manager"])
@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_changelist_and_add_page_open_for_admins_and_managers(request, world, role, model):
    client = client_for(request.getfixturevalue(role))
    assert client.get(url(model, "changelist")).status_code == 200
    expected_add = 403 if model in ENGINE_WRITTEN else 200
    assert client.get(url(model, "add")).status_code == expected_add


@pytest.mark.parametrize("role", ["admin_user", "manager", "viewer"])
@pytest.mark.parametrize("model", PORTFOLIO_MODELS, ids=lambda m: m.__name__)
def test_change_page_opens_for_roles_that_see_the_whole_book(request, world, role, model):
    obj = world["theirs"][model]
    response = client_for(request.getfixturevalue(role)).get(url(model, "change", obj.pk))
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["csm", "viewer"])
@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_changelist_opens_for_csms_and_viewers(request, world, role, model):
    expected = 403 if role == "csm" and model in PLUMBING else 200
    assert client_for(request.getfixturevalue(role)).get(url(model, "changelist")).status_code == expected


@pytest.mark.parametrize("model", [Playbook, ChurnCause], ids=lambda m: m.__name__)
def test_book_wide_reference_pages_open_for_csms(world, csm, model):
    obj = {Playbook: world["playbook"]}.get(model) or model.objects.first()
    assert client_for(csm).get(url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", PLUMBING, ids=lambda m: m.__name__)
def test_csm_cannot_open_book_wide_plumbing(world, csm, manager, viewer, model):
    """Raw webhook bodies name every portfolio's customers; runs and integrations count the whole book."""
    row = make_plumbing_row(world, model)
    client = client_for(csm)
    assert client.get(url(model, "changelist")).status_code == 403
    assert client.get(url(model, "change", row.pk)).status_code == 404
    assert model._meta.verbose_name_plural.capitalize() not in client.get(reverse("admin:index")).content.decode()
    for user in (manager, viewer):
        assert client_for(user).get(url(model, "change", row.pk)).status_code == 200


def test_csm_churn_cause_figures_count_only_their_portfolio(world, csm, manager, make_customer, other_csm):
    from predictions.services.portfolio import churn_causes_refresh

    for _ in range(3):
        make_prediction(make_customer(owner=other_csm))  # "Low engagement" in each latest prediction
    make_prediction(world["mine"][0][Customer])
    churn_causes_refresh()
    assert ChurnCause.objects.get(cause="Low engagement").count == 4  # the book: 3 theirs + 1 mine

    def figures(user) -> dict[str, tuple]:
        cl = client_for(user).get(url(ChurnCause, "changelist")).context["cl"]
        columns = [c for c in cl.list_display if callable(c)] or [lambda o: o.count, lambda o: o.percent]
        return {obj.cause: tuple(column(obj) for column in columns) for obj in cl.result_list}

    assert Customer.objects.filter(owner=csm, is_active=True).count() == 2
    assert figures(csm)["Low engagement"] == (cause_impact(50), 1, 50)
    assert figures(csm)["Payment problems"] == (cause_impact(0), 0, 0)
    assert figures(manager)["Low engagement"] == (4, ChurnCause.objects.get(cause="Low engagement").percent)
    page = client_for(csm).get(url(ChurnCause, "change", ChurnCause.objects.get(cause="Low engagement").pk))
    shown = [name for _, options in page.context["adminform"].fieldsets for name in options["fields"]]
    assert shown == ["cause", "category", "description"]
    assert count_latest_causes(Customer.objects.filter(owner=csm))[0]["Low engagement"] == 1


@pytest.mark.django_db
def test_csm_group_holds_no_permission_on_plumbing():
    codenames = set(Group.objects.get(name="csm").permissions.values_list("codename", flat=True))
    hidden = {f"view_{model._meta.model_name}" for model in PLUMBING} | {"view_externalrecord"}
    assert codenames & hidden == set()
    assert {"view_customer", "view_playbook", "view_churncause"} <= codenames


def test_user_without_role_reaches_no_data(world, make_user):
    client = client_for(make_user(role=None))
    assert client.get(url(Customer, "changelist")).status_code == 403
    assert "Customers" not in client.get(reverse("admin:index")).content.decode()


# --- Portfolio scoping ------------------------------------------------------------------------


def test_csm_customer_changelist_lists_exactly_their_customers(world, csm):
    response = client_for(csm).get(url(Customer, "changelist"))
    assert _changelist_ids(response) == {facts[Customer].pk for facts in world["mine"]}


@pytest.mark.parametrize("model", PORTFOLIO_MODELS, ids=lambda m: m.__name__)
def test_csm_changelists_hold_only_their_portfolio(world, csm, model):
    response = client_for(csm).get(url(model, "changelist"))
    assert _changelist_ids(response) == {facts[model].pk for facts in world["mine"]}


def test_managers_and_viewers_see_every_customer(world, manager, viewer):
    everyone = set(Customer.objects.values_list("pk", flat=True))
    for user in (manager, viewer):
        assert _changelist_ids(client_for(user).get(url(Customer, "changelist"))) == everyone


@pytest.mark.parametrize("view", ["change", "delete", "history"])
@pytest.mark.parametrize("model", PORTFOLIO_MODELS, ids=lambda m: m.__name__)
def test_another_csms_objects_are_404(world, csm, model, view):
    client = client_for(csm)
    assert client.get(url(model, view, world["theirs"][model].pk)).status_code == 404
    assert client.get(url(model, view, world["unassigned"][model].pk)).status_code == 404


def test_post_to_another_csms_customer_is_404_and_changes_nothing(world, csm):
    theirs = world["theirs"][Customer]
    response = client_for(csm).post(url(Customer, "change", theirs.pk), {"name": "Hijacked", "_save": "Save"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.name != "Hijacked"


def test_csm_does_not_see_book_wide_alerts(world, csm, manager):
    book_alert = world["book_alert"]
    assert client_for(csm).get(url(Alert, "change", book_alert.pk)).status_code == 404
    assert client_for(manager).get(url(Alert, "change", book_alert.pk)).status_code == 200


def test_csm_sees_only_their_portfolio_snapshots(world, csm):
    response = client_for(csm).get(url(PortfolioSnapshot, "changelist"))
    assert {snapshot.owner_id for snapshot in response.context["cl"].result_list} == {csm.pk}


def test_csm_cannot_reassign_their_customer(world, csm, other_csm):
    client = client_for(csm)
    customer = world["mine"][0][Customer]
    page = client.get(url(Customer, "change", customer.pk))
    assert "owner" not in page.context["adminform"].form.fields
    data = form_data(page, Customer) | {"name": "Renamed by CSM", "owner": str(other_csm.pk)}
    response = client.post(url(Customer, "change", customer.pk), data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.name == "Renamed by CSM"
    assert customer.owner_id == csm.pk


def test_manager_can_reassign_a_customer(world, manager, other_csm):
    client = client_for(manager)
    customer = world["mine"][0][Customer]
    data = form_data(client.get(url(Customer, "change", customer.pk)), Customer) | {"owner": str(other_csm.pk)}
    assert client.post(url(Customer, "change", customer.pk), data).status_code == 302
    customer.refresh_from_db()
    assert customer.owner_id == other_csm.pk


def test_health_score_and_churn_risk_are_read_only(world, manager):
    client = client_for(manager)
    customer = world["mine"][0][Customer]
    page = client.get(url(Customer, "change", customer.pk))
    fields = page.context["adminform"].form.fields
    assert "health_score" not in fields and "churn_risk" not in fields
    data = form_data(page, Customer) | {"health_score": "1", "churn_risk": "0.99"}
    assert client.post(url(Customer, "change", customer.pk), data).status_code == 302
    customer.refresh_from_db()
    assert (customer.health_score, customer.churn_risk) == (70, Decimal("0.2500"))


def test_csm_is_offered_only_their_customers_for_a_new_intervention(world, csm):
    client = client_for(csm)
    form = client.get(url(Intervention, "add")).context["adminform"].form
    assert set(form.fields["customer"].queryset.values_list("pk", flat=True)) == {
        facts[Customer].pk for facts in world["mine"]
    }
    autocomplete = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "interventions", "model_name": "intervention", "field_name": "customer", "term": ""},
    )
    assert {int(row["id"]) for row in autocomplete.json()["results"]} == {facts[Customer].pk for facts in world["mine"]}


def test_csm_cannot_create_an_intervention_on_another_csms_customer(world, csm):
    before = Intervention.objects.count()
    data = {"customer": world["theirs"][Customer].pk, "type": "call", "status": "active", "priority": "medium"}
    response = client_for(csm).post(url(Intervention, "add"), data)
    assert response.status_code == 200
    assert "customer" in response.context["adminform"].form.errors
    assert Intervention.objects.count() == before


def test_csm_creates_an_intervention_with_service_defaults(world, csm):
    customer = world["mine"][0][Customer]
    data = {"customer": customer.pk, "type": "qbr", "status": "completed", "priority": "medium"}
    response = client_for(csm).post(url(Intervention, "add"), data)
    assert response.status_code == 302
    created = Intervention.objects.get(type="qbr")
    assert created.created_by_id == csm.pk
    assert created.assigned_csm == csm.get_full_name()
    assert created.completed_at is not None


def test_csm_adds_an_intervention_inline_on_the_customer_page(world, csm):
    client = client_for(csm)
    customer = world["mine"][0][Customer]
    data = form_data(client.get(url(Customer, "change", customer.pk)), Customer)
    index = int(data["interventions-TOTAL_FORMS"])
    data |= {
        "interventions-TOTAL_FORMS": str(index + 1),
        f"interventions-{index}-type": "exec sponsor call",
        f"interventions-{index}-status": "pending",
        f"interventions-{index}-priority": "high",
    }
    response = client.post(url(Customer, "change", customer.pk), data)
    assert response.status_code == 302
    created = Intervention.objects.get(type="exec sponsor call")
    assert (created.customer_id, created.created_by_id) == (customer.pk, csm.pk)


# --- Playbook pages refuse, never fail ---------------------------------------------------------


def _playbook_page(name: str, *args: object) -> str:
    return reverse(f"admin:playbooks_playbook_{name}", args=args)


@pytest.mark.parametrize("role", ["csm", "viewer"])
def test_playbook_import_is_refused_to_roles_that_cannot_add_playbooks(request, world, role):
    client = client_for(request.getfixturevalue(role))
    before = list(Playbook.objects.values_list("name", flat=True))
    document = '{"name": "Imported", "steps": [{"type": "wait", "duration": "1d"}]}'
    assert client.get(_playbook_page("import")).status_code == 403
    assert client.post(_playbook_page("import"), {"document": document}).status_code == 403
    assert list(Playbook.objects.values_list("name", flat=True)) == before


def test_viewer_is_refused_the_trigger_page_and_nothing_is_enrolled(world, viewer):
    playbook, customer = world["playbook"], world["mine"][0][Customer]
    before = PlaybookExecution.objects.count()
    client = client_for(viewer)
    assert client.get(_playbook_page("trigger", playbook.pk)).status_code == 403
    assert client.post(_playbook_page("trigger", playbook.pk), {"customer_ids": str(customer.pk)}).status_code == 403
    assert PlaybookExecution.objects.count() == before


@pytest.mark.parametrize("role", ["csm", "viewer"])
def test_playbook_read_pages_open_and_a_missing_playbook_is_404(request, world, role):
    client = client_for(request.getfixturevalue(role))
    assert client.get(_playbook_page("dry_run", world["playbook"].pk)).status_code == 200
    assert client.get(_playbook_page("report")).status_code == 200
    assert client.get(_playbook_page("dry_run", 999999)).status_code == 404


def test_user_without_role_is_refused_the_playbook_pages(world, make_user):
    client = client_for(make_user(role=None))
    for path in (_playbook_page("dry_run", world["playbook"].pk), _playbook_page("report"), _playbook_page("import")):
        assert client.get(path).status_code == 403, path


# --- Viewers read, never write ----------------------------------------------------------------


def test_viewer_sees_a_read_only_change_page(world, viewer):
    customer = world["mine"][0][Customer]
    response = client_for(viewer).get(url(Customer, "change", customer.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert customer.name in html


def test_viewer_post_does_not_change_a_customer(world, viewer):
    customer = world["mine"][0][Customer]
    response = client_for(viewer).post(url(Customer, "change", customer.pk), {"name": "Changed", "_save": "Save"})
    assert response.status_code == 403
    customer.refresh_from_db()
    assert customer.name != "Changed"


@pytest.mark.parametrize("model", [Customer, Intervention, Alert], ids=lambda m: m.__name__)
def test_viewer_cannot_add_or_delete(world, viewer, model):
    client = client_for(viewer)
    obj = world["mine"][0][model]
    assert client.get(url(model, "add")).status_code == 403
    assert client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_viewer_has_no_actions(world, viewer):
    client = client_for(viewer)
    for model in (Intervention, Alert, Customer):
        assert 'name="action"' not in client.get(url(model, "changelist")).content.decode()
    intervention = world["mine"][0][Intervention]
    alert = world["mine"][0][Alert]
    client.post(url(Intervention, "changelist"), {"action": "mark_completed", "_selected_action": [intervention.pk]})
    client.post(url(Alert, "changelist"), {"action": "mark_read", "_selected_action": [alert.pk]})
    intervention.refresh_from_db()
    alert.refresh_from_db()
    assert intervention.status == Intervention.Status.ACTIVE
    assert alert.read is False


# --- Actions ----------------------------------------------------------------------------------


def _run_action(client: Client, model: type[Model], action: str, objects: list[Model]):
    data = {"action": action, "_selected_action": [obj.pk for obj in objects]}
    return client.post(url(model, "changelist"), data)


def test_manager_marks_interventions_completed(world, manager):
    rows = [world["mine"][0][Intervention], world["theirs"][Intervention]]
    assert _run_action(client_for(manager), Intervention, "mark_completed", rows).status_code == 302
    for row in rows:
        row.refresh_from_db()
        assert row.status == Intervention.Status.COMPLETED
        assert row.completed_at is not None


def test_manager_escalates_interventions(world, manager):
    row = world["theirs"][Intervention]
    _run_action(client_for(manager), Intervention, "escalate", [row])
    row.refresh_from_db()
    assert row.priority == Intervention.Priority.HIGH


@pytest.mark.parametrize(
    ("action", "field", "value"),
    [("mark_completed", "status", Intervention.Status.COMPLETED), ("escalate", "priority", "high")],
)
def test_csm_intervention_actions_never_leave_the_portfolio(world, csm, action, field, value):
    mine, theirs = world["mine"][0][Intervention], world["theirs"][Intervention]
    before = getattr(theirs, field)
    assert _run_action(client_for(csm), Intervention, action, [mine, theirs]).status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert getattr(mine, field) == value
    assert getattr(theirs, field) == before


def test_alert_mark_read_stays_in_the_csms_scope(world, csm):
    mine, theirs, book = world["mine"][0][Alert], world["theirs"][Alert], world["book_alert"]
    assert _run_action(client_for(csm), Alert, "mark_read", [mine, theirs, book]).status_code == 302
    assert Alert.objects.get(pk=mine.pk).read is True
    assert Alert.objects.get(pk=theirs.pk).read is False
    assert Alert.objects.get(pk=book.pk).read is False


def test_manager_marks_any_alert_read(world, manager):
    alerts = [world["theirs"][Alert], world["book_alert"]]
    _run_action(client_for(manager), Alert, "mark_read", alerts)
    assert all(Alert.objects.get(pk=alert.pk).read for alert in alerts)


def test_manager_bulk_deletes_customers(world, manager):
    doomed = world["theirs"][Customer]
    client = client_for(manager)
    response = client.post(
        url(Customer, "changelist"), {"action": "delete_selected", "_selected_action": [doomed.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Customer.objects.filter(pk=doomed.pk).exists()
    assert Customer.objects.filter(pk=world["mine"][0][Customer].pk).exists()


def test_csm_cannot_bulk_delete(world, csm):
    html = client_for(csm).get(url(Intervention, "changelist")).content.decode()
    assert "mark_completed" in html and "delete_selected" not in html


def test_csm_alert_form_only_changes_read(world, csm):
    alert = world["mine"][0][Alert]
    form = client_for(csm).get(url(Alert, "change", alert.pk)).context["adminform"].form
    assert set(form.fields) == {"read"}


# --- Bounded queries --------------------------------------------------------------------------


def _grow(make_customer, owner, playbook, count: int) -> None:
    now = timezone.now()
    for n in range(count):
        customer = make_customer(owner=owner)
        UserSession.objects.create(customer=customer, started_at=now - dt.timedelta(hours=n))
        Intervention.objects.create(customer=customer, type="call")
        Alert.objects.create(customer=customer, title="t", message="m")
        ChurnPrediction.objects.create(
            customer=customer, churn_probability=Decimal("0.9"), risk_level="high", prediction_date=now
        )
        PlaybookExecution.objects.create(playbook=playbook, customer=customer, started_at=now)


@pytest.mark.parametrize("role", ["manager", "csm"])
@pytest.mark.parametrize(
    "model", [Customer, Intervention, Alert, UserSession, ChurnPrediction, PlaybookExecution], ids=lambda m: m.__name__
)
def test_changelist_queries_do_not_grow_with_rows(request, make_customer, csm, role, model):
    user = request.getfixturevalue(role)
    playbook = Playbook.objects.create(name="p")
    client = client_for(user)
    path = url(model, "changelist")
    _grow(make_customer, csm, playbook, 3)
    client.get(path)  # warm per-process caches (content types)
    few = count_queries(client, path)
    _grow(make_customer, csm, playbook, 27)
    many = count_queries(client, path)
    assert many == few
    assert len(client.get(path).context["cl"].result_list) == 30


def test_customer_change_page_is_bounded_with_many_sessions(make_customer, csm):
    customer = make_customer(owner=csm)
    now = timezone.now()
    client = client_for(csm)
    path = url(Customer, "change", customer.pk)

    def add_sessions(count: int) -> None:
        start = UserSession.objects.filter(customer=customer).count()
        UserSession.objects.bulk_create(
            UserSession(customer=customer, started_at=now - dt.timedelta(hours=start + n), pages_viewed=n)
            for n in range(count)
        )
        for n in range(count // 5):
            ChurnPrediction.objects.create(
                customer=customer,
                churn_probability=Decimal("0.5"),
                risk_level="medium",
                prediction_date=now - dt.timedelta(days=start + n),
            )
            Intervention.objects.create(customer=customer, type=f"call {start + n}")

    add_sessions(5)
    client.get(path)
    few = count_queries(client, path)
    add_sessions(45)
    many = count_queries(client, path)
    assert many == few
    assert many <= 32

    # Sessions are summarised a row per day on the timeline; predictions are the trend chart.
    response = client.get(path)
    workspace = response.context["workspace"]
    days = [e for e in workspace["timeline"]["events"] if e["type"] == "session_day"]
    assert sum(int(e["title"].split(" ")[0]) for e in days) == 50
    assert len(days) == len({timezone.localdate(now - dt.timedelta(hours=h)) for h in range(50)})
    assert workspace["trend"]["points"] == 10
    assert "50 sessions" in response.content.decode()


# --- Integrations never show secrets ----------------------------------------------------------


@pytest.mark.parametrize("role", ["admin_user", "manager", "viewer"])
def test_integration_pages_never_show_secret_values(request, world, role):
    client = client_for(request.getfixturevalue(role))
    integration = world["integration"]
    for path in (url(Integration, "changelist"), url(Integration, "change", integration.pk)):
        html = client.get(path).content.decode()
        assert SECRET not in html
    change = client.get(url(Integration, "change", integration.pk)).content.decode()
    assert "eu" in change and "api_key" in change  # the public setting, and the name of the stored secret


@pytest.mark.parametrize("role", ["admin_user", "manager"])
def test_admins_and_managers_set_integrations_up_without_json_or_status(request, world, role):
    # The typed setup forms themselves are tested in integrations/tests/test_setup_forms.py.
    client = client_for(request.getfixturevalue(role))
    integration = world["integration"]
    path = url(Integration, "change", integration.pk)
    form = client.get(path).context["adminform"].form
    assert "config" not in form.fields and "status" not in form.fields
    Integration.objects.filter(pk=integration.pk).update(status="error")
    data = form_data(client.get(path), Integration) | {"status": "connected", "config": "{}", "provider": "stripe"}
    assert client.post(path, data).status_code == 302
    integration.refresh_from_db()
    assert integration.config == {"api_key": SECRET, "region": "eu", "provider": "stripe"}
    assert integration.status == "disconnected"  # a new provider: not connected until tested or synced
    assert SECRET not in client.get(path).content.decode()


@pytest.mark.django_db
def test_role_groups_exist():
    # The admin relies on the permissions the roles migration gives these groups.
    assert set(Group.objects.values_list("name", flat=True)) >= {"admin", "manager", "csm", "viewer"}
