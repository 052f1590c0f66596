"""Portfolio scope in every admin page, generated from the admin site (ADR 0002, ADR 0016).

The pages are not listed by hand: they are the admin site's own URLs (index, one per app,
autocomplete, view-on-site) and, for every entry of `admin.site._registry`, the changelist (plain,
with filter facets, searched for another portfolio's marker, as a raw-id popup), the add page, the
change, history and delete pages of one row, every custom URL of its `get_urls()`, and the
autocomplete answer of each of its autocomplete fields.

A CSM of a small portfolio works in a book where other CSMs' customers (and unassigned ones) have
rows in every table. As that CSM:

1. no page depends on what lies outside the portfolio: every page renders the same (CSRF tokens
   aside) before and after the rest of the book grows by a row in every admin table and the
   book-wide aggregates (churn causes, snapshots, scoring runs) are recomputed. A count, a name,
   an id or an aggregate of someone else's rows shows up as a difference;
2. a portfolio-scoped changelist lists exactly the rows made for the portfolio;
3. the change, history and delete pages (and view-on-site) of a row outside answer 404, or 403
   when the CSM may not open that page at all — never 200 and never a redirect with a message;
4. no other portfolio's marker (customer names, e-mails, webhook bodies) appears anywhere.

And no admin page (GET, or POST to a custom view) answers 500 to a CSM, a viewer or a manager.

How a new admin page is held to this: the book grows by a row (`make_row`, the generic filler of
`test_admin_queries`) in every registered table except those whose admin declares itself book-wide
reference data (`PortfolioScopedAdmin.book_wide`), so a new ModelAdmin that a CSM may open and that
does not scope its rows lists one more row after the growth and check 1 fails. A ModelAdmin that is
not a `PortfolioScopedAdmin` must refuse CSMs outright. A custom admin URL with a path argument
this file cannot fill fails loudly until `fill_kwargs` learns it.
"""

import datetime as dt
import io
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone
from openpyxl import load_workbook

from alerts.services import alert_create, notification_preference_set
from customers.admin_scoping import PortfolioScopedAdmin
from customers.models import BillingEvent, Customer, NpsResponse, Subscription, SupportTicket, UserSession
from integrations.models import Integration, WebhookEvent
from integrations.services import webhook_store
from interventions.models import Intervention
from playbooks.models import Playbook
from playbooks.services import enrol, playbook_create
from predictions.models import PortfolioSnapshot
from predictions.services.portfolio import churn_causes_refresh
from predictions.services.scoring import score_customers
from tests.test_admin_queries import SINGLETONS, make_row

RIVAL = "rival"  # every name, e-mail and body about another CSM's customers carries it
STANDARD_VIEWS = {"changelist", "add", "change", "delete", "history"}
CSRF = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]*"')
NOW_BOUNDS = re.compile(rb'\b(min|max)="\d{4}-\d\d-\d\dT\d\d:\d\d"')


def registry() -> list[tuple[type[Model], admin.ModelAdmin]]:
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def is_book_wide(model_admin: admin.ModelAdmin) -> bool:
    return isinstance(model_admin, PortfolioScopedAdmin) and getattr(model_admin, "book_wide", False)


def is_portfolio_scoped(model_admin: admin.ModelAdmin) -> bool:
    return isinstance(model_admin, PortfolioScopedAdmin) and bool(model_admin.customer_path)


def _info(model: type[Model]) -> str:
    return f"{model._meta.app_label}_{model._meta.model_name}"


# --- The book -----------------------------------------------------------------------------------


def _customers(owner: Any, tag: str, count: int) -> list[Customer]:
    now = timezone.now()
    return [
        Customer.objects.create(
            name=f"{tag} Customer {n}",
            email=f"{tag.lower()}{n}@{tag.lower()}.example",
            company=f"{tag} Company {n}",
            plan="Pro",
            mrr=Decimal(100 * (n + 1)),
            signup_date=now - dt.timedelta(days=300 + n),
            last_login=now - dt.timedelta(days=40),
            churn_risk=Decimal("0.2000"),
            owner=owner,
        )
        for n in range(count)
    ]


def _facts(customers: list[Customer], tag: str, playbook: Playbook, integration: Integration) -> None:
    """A row in every customer-scoped table for each customer, written the way production writes them."""
    now = timezone.now()
    for customer in customers:
        UserSession.objects.create(customer=customer, started_at=now - dt.timedelta(days=45), pages_viewed=2)
        SupportTicket.objects.create(customer=customer, subject=f"{tag} export broken", opened_at=now)
        NpsResponse.objects.create(customer=customer, score=3, comment=f"{tag} unhappy", responded_at=now)
        BillingEvent.objects.create(
            customer=customer, kind=BillingEvent.Kind.PAYMENT_FAILED, amount=Decimal(10), occurred_at=now
        )
        Subscription.objects.create(
            customer=customer,
            external_id=f"sub_{tag}_{customer.pk}",
            plan=f"{tag} plan",
            started_at=now - dt.timedelta(days=30),
            status=Subscription.Status.ACTIVE,
        )
        Intervention.objects.create(customer=customer, type="call", notes=f"{tag} call notes")
        alert_create(title=f"{tag} risk up for {customer.name}", message="m", customer_id=customer.pk)
    score_customers(customer_ids=[c.pk for c in customers], trigger="manual")
    enrol(playbook=playbook, customer_ids=[c.pk for c in customers], trigger="manual", use_holdout=False)
    webhook_store(
        rows=[
            WebhookEvent(
                integration=integration,
                provider="stripe",
                event_id=f"evt_{tag}_{customer.pk}",
                event_type="invoice.payment_failed",
                body=f'{{"customer_email": "{customer.email}"}}',
                received_at=now,
                next_attempt_at=now,
            )
            for customer in customers
        ],
        enqueue=False,
    )


def _pks() -> dict[type[Model], set[Any]]:
    return {model: set(model._default_manager.values_list("pk", flat=True)) for model, _ in registry()}


def build_book(csm: Any, rival: Any, capture: Any) -> dict[str, Any]:
    """The CSM's portfolio (two customers), a rival's (three) and one unassigned customer, with rows
    in every table; returns the rows made for the CSM's portfolio by model."""
    # A rule matching every customer, so the dry run lists whom it may show.
    playbook = playbook_create(
        data={
            "name": "Save the account",
            "steps": [{"type": "wait", "duration": "30d"}],
            "rules": [{"kind": "segment"}],
        }
    )
    integration = Integration.objects.create(name="Stripe", type=Integration.Type.PAYMENT, config={"region": "eu"})
    with capture(execute=True):
        churn_causes_refresh()  # every known cause has its row, counted over the whole book
    before = _pks()
    with capture(execute=True):
        mine = _customers(csm, "Mine", 2)
        _facts(mine, "Mine", playbook, integration)
        notification_preference_set(user=csm, data={"min_severity": "low"})
        PortfolioSnapshot.objects.create(date=timezone.localdate(), owner=csm, active_customers=2, risk_sum=0.4)
    after = _pks()
    with capture(execute=True):
        theirs = _customers(rival, "Rival", 3) + _customers(None, "Rival Unassigned", 1)
        _facts(theirs, RIVAL.title(), playbook, integration)
        notification_preference_set(user=rival, data={"min_severity": "low"})
        PortfolioSnapshot.objects.create(date=timezone.localdate(), owner=rival, active_customers=3, risk_sum=0.6)
        churn_causes_refresh()
    return {
        "mine": {model: after[model] - before[model] for model in after},
        "playbook": playbook,
        "integration": integration,
    }


def _book_wide_models() -> set[type[Model]]:
    """Models of book-wide admins and of their inlines (a playbook's trigger rules)."""
    book_wide = {model: model_admin for model, model_admin in admin.site._registry.items() if is_book_wide(model_admin)}
    return set(book_wide) | {inline.model for model_admin in book_wide.values() for inline in model_admin.inlines}


def _existing_reference_rows(model: type[Model]) -> dict[str, Model | None]:
    """Book-wide rows a new row points to (an execution's playbook and rule): a new playbook is no leak."""
    fixed = {}
    for field in model._meta.concrete_fields:
        if field.is_relation and field.related_model in _book_wide_models():
            fixed[field.name] = field.related_model._default_manager.order_by("pk").first()
            assert fixed[field.name] is not None or field.null, f"{model._meta.label}.{field.name}: no row to point to"
    return fixed


def grow_the_rest_of_the_book(rival: Any, book: dict[str, Any], capture: Any) -> dict[type[Model], set[Any]]:
    """Another rival customer with every fact, a row in every table that is not book-wide, and the
    book-wide aggregates recomputed; returns the rows added by model."""
    before = _pks()
    with capture(execute=True):
        more = _customers(rival, "Rival Later", 1)
        _facts(more, "Rival Later", book["playbook"], book["integration"])
        for model, model_admin in registry():
            if not is_book_wide(model_admin) and model._meta.label not in SINGLETONS:
                make_row(model, **_existing_reference_rows(model))
        churn_causes_refresh()
    after = _pks()
    return {model: after[model] - before[model] for model in after}


# --- The pages ----------------------------------------------------------------------------------


def _pattern_kwargs(pattern: URLPattern) -> list[str]:
    return list(pattern.pattern.regex.groupindex)


def custom_urls(model: type[Model], model_admin: admin.ModelAdmin, pk: Any, about_a_row: bool = False) -> Iterator[str]:
    """Every URL a ModelAdmin adds to Django's five views, its path arguments filled with `pk`
    (only those about one row with `about_a_row`)."""
    info = _info(model)
    for pattern in model_admin.get_urls():
        if isinstance(pattern, URLResolver) or pattern.name is None:
            continue  # the catch-all redirect to the change page
        if pattern.name.removeprefix(f"{info}_") in STANDARD_VIEWS:
            continue
        names = _pattern_kwargs(pattern)
        unknown = set(names) - {"pk", "object_id", "id"}
        assert not unknown, f"{pattern.name}: teach test_admin_scope how to fill {unknown}"
        if (names and pk is None) or (about_a_row and not names):
            continue
        yield reverse(f"admin:{pattern.name}", kwargs=dict.fromkeys(names, pk))


def site_urls() -> Iterator[str]:
    """The admin site's own pages that take no object (index, one page per app, password change)."""
    app_labels = sorted({model._meta.app_label for model in admin.site._registry})
    for pattern in admin.site.get_urls():
        if not isinstance(pattern, URLPattern) or pattern.name in (None, "logout", "view_on_site", "autocomplete"):
            continue
        names = _pattern_kwargs(pattern)
        if names == ["app_label"]:
            yield from (reverse(f"admin:{pattern.name}", kwargs={"app_label": label}) for label in app_labels)
        else:
            assert not names, f"admin:{pattern.name}: teach test_admin_scope how to fill {names}"
            yield reverse(f"admin:{pattern.name}")


def autocomplete_urls(model: type[Model], model_admin: admin.ModelAdmin, term: str = "") -> Iterator[str]:
    for field_name in model_admin.autocomplete_fields:
        params = f"app_label={model._meta.app_label}&model_name={model._meta.model_name}&field_name={field_name}"
        yield f"{reverse('admin:autocomplete')}?{params}&term={term}"


def object_urls(model: type[Model], pk: Any) -> list[str]:
    content_type = ContentType.objects.get_for_model(model)
    return [
        *(reverse(f"admin:{_info(model)}_{view}", args=[pk]) for view in ("change", "history", "delete")),
        reverse("admin:view_on_site", args=[content_type.pk, pk]),
    ]


def pages(book: dict[str, Any]) -> list[str]:
    """Every page a user may ask for, with one row of each model to open (the CSM's own, if any)."""
    urls = list(site_urls())
    for model, model_admin in registry():
        changelist = reverse(f"admin:{_info(model)}_changelist")
        urls += [changelist, f"{changelist}?_facets=1", f"{changelist}?q={RIVAL}"]
        urls.append(f"{changelist}?_popup=1&_to_field=id")  # the raw-id picker
        urls.append(reverse(f"admin:{_info(model)}_add"))
        mine = book["mine"].get(model)
        pk = min(mine) if mine else model._default_manager.values_list("pk", flat=True).order_by("pk").first()
        if pk is not None:
            urls += object_urls(model, pk)
        urls += list(custom_urls(model, model_admin, pk))
        urls += list(autocomplete_urls(model, model_admin)) + list(autocomplete_urls(model, model_admin, RIVAL))
    return urls


def _without_search_echo(body: bytes) -> bytes:
    """The page without the searched term it repeats (search box, links that keep the query)."""
    return re.sub(rb"(q=|q%3D|term=|value=\")" + RIVAL.encode(), b"", body, flags=re.IGNORECASE)


def client_for(user: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _xlsx_cells(body: bytes) -> bytes:
    """An XLSX download as its cell values: the zip's and the workbook's timestamps are not rows of the book."""
    workbook = load_workbook(io.BytesIO(body), read_only=True)
    return repr([[list(row) for row in sheet.iter_rows(values_only=True)] for sheet in workbook.worksheets]).encode()


def render(client: Client, url: str) -> tuple[int, bytes]:
    response = client.get(url)
    body = b"".join(response) if response.streaming else response.content
    if response.get("Content-Type", "").startswith("application/vnd.openxmlformats"):
        body = _xlsx_cells(body)
    # The alert page's snooze picker is bounded by the current minute: not a row of the book.
    return response.status_code, NOW_BOUNDS.sub(rb'\1="now"', CSRF.sub(rb'\1"', body))


# --- The checks ---------------------------------------------------------------------------------


@pytest.fixture
def book(csm, other_csm, django_capture_on_commit_callbacks):
    return build_book(csm, other_csm, django_capture_on_commit_callbacks)


@pytest.mark.django_db
def test_nothing_outside_the_portfolio_reaches_a_csm_in_any_admin_page(
    book, csm, other_csm, django_capture_on_commit_callbacks
):
    client = client_for(csm)
    urls = pages(book)
    seen = {url: render(client, url) for url in urls}

    problems = []
    for url, (status, body) in seen.items():
        if status >= 500:
            problems.append(f"{url}: {status}")
        if RIVAL.encode() in _without_search_echo(body).lower():
            problems.append(f"{url}: shows another portfolio's marker")
    for model, model_admin in registry():
        if not isinstance(model_admin, PortfolioScopedAdmin):
            status = seen[reverse(f"admin:{_info(model)}_changelist")][0]
            if status != 403:
                problems.append(f"{model._meta.label}: not a PortfolioScopedAdmin, yet a CSM gets {status}")
        if is_portfolio_scoped(model_admin):
            response = client.get(reverse(f"admin:{_info(model)}_changelist"))
            shown = {obj.pk for obj in response.context["cl"].result_list}
            expected = book["mine"][model]
            if shown != expected:
                problems.append(f"{model._meta.label}: lists {sorted(shown)}, the portfolio has {sorted(expected)}")

    added = grow_the_rest_of_the_book(other_csm, book, django_capture_on_commit_callbacks)
    for url in urls:
        again = render(client, url)
        if again != seen[url]:
            problems.append(f"{url}: changes when rows outside the portfolio change ({seen[url][0]} -> {again[0]})")
    for model, model_admin in registry():
        outside = added[model]
        if not outside and not is_book_wide(model_admin) and model._meta.label not in SINGLETONS:
            problems.append(f"{model._meta.label}: the book did not grow, so its scope went unchecked")
        for pk in sorted(outside)[:2]:
            for url in [*object_urls(model, pk), *custom_urls(model, model_admin, pk, about_a_row=True)]:
                status = client.get(url).status_code
                if status not in (403, 404):
                    problems.append(f"{url} (outside the portfolio): {status}")
    assert problems == [], "\n".join(problems)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["csm", "viewer", "manager"])
def test_no_admin_page_answers_500_to_any_role(request, book, role):
    client = client_for(request.getfixturevalue(role))
    failures = []
    for url in pages(book):
        status = client.get(url).status_code
        if status >= 500:
            failures.append(f"GET {url}: {status}")
    for model, model_admin in registry():
        mine = book["mine"].get(model)
        pk = min(mine) if mine else model._default_manager.values_list("pk", flat=True).order_by("pk").first()
        for url in custom_urls(model, model_admin, pk):
            status = client.post(url, {}).status_code
            if status >= 500:
                failures.append(f"POST {url}: {status}")
    assert failures == [], "\n".join(failures)
