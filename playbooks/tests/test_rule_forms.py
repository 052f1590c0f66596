"""Trigger rules edited as forms in the admin: typed parameters per kind, the segment as condition
rows (errors on their row and field), the JSON stored is what the form built, the go-ahead still
needed after an edit, the live match count scoped to the user, who may edit, the list in plain
English, and the queries each page costs."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from playbooks import approvals, rules, services
from playbooks.models import TriggerRule
from tests.test_csp import assert_strict

pytestmark = pytest.mark.django_db
ADD = reverse("admin:playbooks_triggerrule_add")
PREVIEW = reverse("admin:playbooks_triggerrule_preview")
LIST = reverse("admin:playbooks_triggerrule_changelist")
WAIT = [{"key": "w", "type": "wait", "duration": "1d"}]


def rows(*conditions: dict) -> dict:
    """The segment formset's POST data: one row per condition, `field`/`op` and its value inputs."""
    data = {
        "segment-TOTAL_FORMS": str(len(conditions)),
        "segment-INITIAL_FORMS": "0",
        "segment-MIN_NUM_FORMS": "0",
        "segment-MAX_NUM_FORMS": "1000",
    }
    for index, condition in enumerate(conditions):
        data.update({f"segment-{index}-{name}": value for name, value in condition.items()})
    return data


def rule_data(playbook, kind: str, *conditions: dict, **params) -> dict:
    return {"playbook": playbook.pk, "kind": kind, "is_active": "on", **params, **rows(*conditions)}


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


def row_errors(response) -> list[dict]:
    return [form.errors for form in response.context["adminform"].form.segment_rows.forms]


@pytest.fixture
def manager_client(manager):
    client = Client()
    client.force_login(manager)
    return client


@pytest.mark.parametrize(
    ("kind", "params", "stored"),
    [
        ("risk_enters_high", {}, {}),
        ("health_drop", {"points": "15", "health_days": "21"}, {"points": 15, "days": 21}),
        ("failed_payment", {"payment_days": "3"}, {"days": 3}),
        ("cause_appears", {"cause": "Support issues"}, {"cause": "Support issues"}),
        ("renewal_within", {"renewal_days": "90"}, {"days": 90}),
        ("segment", {}, {}),
    ],
)
def test_each_kind_stores_exactly_its_typed_parameters(
    manager_client, make_playbook, make_customer, kind, params, stored
):
    make_customer(plan="Pro")  # the plans on offer are those of the customers the user sees
    playbook = make_playbook(WAIT)
    # Every other kind's inputs are filled in too (as without JavaScript): they are ignored.
    others = {"points": "7", "health_days": "8", "payment_days": "9", "renewal_days": "10", "cause": "Low engagement"}
    data = rule_data(playbook, kind, {"field": "plan", "op": "in", "plans": ["Pro"]}, **{**others, **params})
    response = manager_client.post(ADD, data)
    assert response.status_code == 302, form_errors(response)
    rule = TriggerRule.objects.get()
    assert (rule.kind, rule.params, rule.segment, rule.is_active) == (kind, stored, {"plan": ["Pro"]}, True)


@pytest.mark.parametrize(
    ("kind", "params", "field", "message"),
    [
        ("health_drop", {"points": "", "health_days": "30"}, "points", "Health score drops needs this."),
        ("health_drop", {"points": "0", "health_days": "30"}, "points", "greater than or equal to 1"),
        ("health_drop", {"points": "20", "health_days": "400"}, "health_days", "less than or equal to 365"),
        ("failed_payment", {"payment_days": "x"}, "payment_days", "Enter a whole number."),
        ("cause_appears", {"cause": ""}, "cause", "Choose the churn cause that starts the playbook."),
        ("cause_appears", {"cause": "Bad weather"}, "cause", "Select a valid choice."),
        ("renewal_within", {"renewal_days": "731"}, "renewal_days", "less than or equal to 730"),
        ("renewal_within", {}, "renewal_days", "Renewal is near needs this."),
    ],
)
def test_a_bad_parameter_is_an_error_on_its_field_and_nothing_is_written(
    manager_client, make_playbook, kind, params, field, message
):
    playbook = make_playbook(WAIT)
    response = manager_client.post(ADD, rule_data(playbook, kind, **params))
    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == [field]
    assert message in errors[field][0]
    assert not TriggerRule.objects.exists()


def test_a_two_condition_segment_is_stored_as_the_engine_reads_it(
    manager_client, make_playbook, make_customer, manager
):
    make_customer(owner=manager, plan="Enterprise")
    playbook = make_playbook(WAIT)
    data = rule_data(
        playbook,
        "risk_enters_high",
        {"field": "plan", "op": "in", "plans": ["Enterprise"], "number": "5"},  # the number is not a plan's
        {"field": "mrr", "op": "gte", "number": "1000"},
        {"field": "risk", "op": "lte", "number": "85.5"},
        {"field": "risk_level", "op": "in", "levels": ["medium", "high"]},
        {"field": "health", "op": "lte", "number": "40"},
        {"field": "owner", "op": "in", "owners": [str(manager.pk)]},
        {"field": "signup", "op": "within", "number": "14"},
        {"field": "", "op": "in"},  # the blank row at the end
        {"field": "mrr", "op": "lte", "number": "5", "DELETE": "on"},  # removed
    )
    response = manager_client.post(ADD, data)
    assert response.status_code == 302, (form_errors(response), row_errors(response))
    rule = TriggerRule.objects.get()
    assert rule.segment == {
        "plan": ["Enterprise"],
        "mrrGte": 1000,
        "riskLte": 0.855,
        "riskLevel": ["medium", "high"],
        "healthLte": 40,
        "ownerIds": [manager.pk],
        "signupWithinDays": 14,
    }
    # The form shows it back as the same rows, and saving them unchanged stores the same JSON.
    page = manager_client.get(reverse("admin:playbooks_triggerrule_change", args=[rule.pk]))
    initial = [form.initial for form in page.context["adminform"].form.segment_rows.forms if form.initial]
    assert [(row["field"], row["op"]) for row in initial] == [
        ("plan", "in"),
        ("mrr", "gte"),
        ("risk", "lte"),
        ("risk_level", "in"),
        ("health", "lte"),
        ("owner", "in"),
        ("signup", "within"),
    ]
    assert initial[2]["number"] == Decimal("85.5")


def test_segment_errors_sit_on_their_row_and_field(manager_client, make_playbook):
    playbook = make_playbook(WAIT)
    response = manager_client.post(
        ADD,
        rule_data(
            playbook,
            "segment",
            {"field": "mrr", "op": "in", "number": "1000"},  # MRR is compared, not listed
            {"field": "plan", "op": "in"},  # no plan picked
            {"field": "health", "op": "gte", "number": "101"},
            {"field": "", "op": "in", "number": "3"},  # a value without a field
            {"field": "risk", "op": "gte", "number": "abc"},
        ),
    )
    assert response.status_code == 200
    assert form_errors(response)["__all__"] == ["Check the segment conditions below."]
    assert row_errors(response) == [
        {"op": ["MRR takes “is at least” or “is at most”."]},
        {"plans": ["Pick at least one plan."]},
        {"number": ["Health score cannot be above 100."]},
        {"field": ["Choose what this condition looks at."]},
        {"number": ["Enter a number."]},
    ]
    assert not TriggerRule.objects.exists()


def test_duplicate_conditions_and_crossed_ranges_are_row_errors(manager_client, make_playbook, make_customer):
    make_customer(plan="Enterprise")
    playbook = make_playbook(WAIT)
    response = manager_client.post(
        ADD,
        rule_data(
            playbook,
            "segment",
            {"field": "mrr", "op": "gte", "number": "2000"},
            {"field": "plan", "op": "in", "plans": ["Enterprise"]},
            {"field": "mrr", "op": "gte", "number": "10"},
        ),
    )
    assert row_errors(response)[2] == {"op": ["Condition 1 already says this; change that one instead."]}
    response = manager_client.post(
        ADD,
        rule_data(
            playbook,
            "segment",
            {"field": "mrr", "op": "gte", "number": "2000"},
            {"field": "mrr", "op": "lte", "number": "1000"},
        ),
    )
    assert row_errors(response) == [{}, {"number": ["Below the MRR minimum in condition 1."]}]
    # A plan that no customer has is not on offer.
    response = manager_client.post(
        ADD, rule_data(playbook, "segment", {"field": "plan", "op": "in", "plans": ["Platinum"]})
    )
    assert "Platinum is not one of the available choices" in row_errors(response)[0]["plans"][0]
    assert not TriggerRule.objects.exists()


def test_an_edit_through_the_form_still_needs_a_go_ahead(manager_client, make_playbook, make_customer, manager):
    playbook = make_playbook(WAIT)
    enterprise = make_customer(plan="Enterprise", mrr=Decimal("1500.00"))
    make_customer(plan="Pro", mrr=Decimal("1500.00"))
    make_customer(plan="Enterprise", mrr=Decimal("200.00"))
    segment = ({"field": "plan", "op": "in", "plans": ["Enterprise"]}, {"field": "mrr", "op": "gte", "number": "1000"})
    assert manager_client.post(ADD, rule_data(playbook, "segment", *segment)).status_code == 302
    rule = TriggerRule.objects.get()
    # A new rule through the form waits for a go-ahead, like any other.
    assert (rules.is_approved(rule), services.evaluate_rules()) == (False, {})
    rule = approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)
    assert rule.approval_summary["matched"] == 1
    change = reverse("admin:playbooks_triggerrule_change", args=[rule.pk])
    # Saved again as it is: the same JSON, so the go-ahead holds.
    assert manager_client.post(change, rule_data(playbook, "segment", *segment)).status_code == 302
    rule.refresh_from_db()
    assert rules.is_approved(rule)
    # Changed: paused until the next go-ahead, and it enrols no one.
    edited = (segment[0], {"field": "mrr", "op": "gte", "number": "100"})
    assert manager_client.post(change, rule_data(playbook, "segment", *edited)).status_code == 302
    rule.refresh_from_db()
    assert rule.segment == {"plan": ["Enterprise"], "mrrGte": 100}
    assert not rules.is_approved(rule)
    assert services.evaluate_rules() == {}
    assert "paused: waiting for a manager" in manager_client.get(change).content.decode()
    approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)
    assert services.evaluate_rules() == {rule.pk: 2}
    assert enterprise.pk in rules.matching_customers(rule, customer_ids=None, now=rule.approved_at)


def test_the_preview_counts_the_form_rule_among_the_customers_the_user_sees(
    manager_client, make_playbook, make_customer, csm, other_csm
):
    playbook = make_playbook(WAIT)
    for owner in (csm, csm, other_csm):
        make_customer(owner=owner, plan="Enterprise")
    make_customer(owner=csm, plan="Pro")
    data = rule_data(playbook, "segment", {"field": "plan", "op": "in", "plans": ["Enterprise"]})
    answer = manager_client.post(PREVIEW, data)
    assert answer.status_code == 200
    assert answer.json() == {
        "matched": 3,
        "wouldEnrol": 3,
        "text": "Matches 3 customers now; would enrol 3 customers, e-mail 0 (each e-mail waits for review).",
    }
    assert not TriggerRule.objects.exists()  # a preview writes nothing
    bad = manager_client.post(PREVIEW, rule_data(playbook, "renewal_within"))
    assert (bad.status_code, bad.json()["errors"]["renewal_days"]) == (400, ["Renewal is near needs this."])
    assert manager_client.get(PREVIEW).status_code == 405
    # A CSM has no permission on rules: no preview, no form. Were one granted it by mistake, the
    # count would still be theirs only.
    client = Client()
    client.force_login(csm)
    assert client.post(PREVIEW, data).status_code == 403
    assert client.get(ADD).status_code == 403
    csm.user_permissions.add(Permission.objects.get(codename="add_triggerrule"))
    assert client.post(PREVIEW, data).json()["matched"] == 2


def test_who_may_edit_rules_is_unchanged(make_playbook, csm, viewer, manager, admin_user):
    playbook = make_playbook(WAIT)
    rule = TriggerRule.objects.create(playbook=playbook, kind="segment", segment={"riskLevel": ["high"]})
    change = reverse("admin:playbooks_triggerrule_change", args=[rule.pk])
    data = rule_data(playbook, "renewal_within", renewal_days="30")
    # A CSM and a viewer read rules (in words), only managers and admins change them.
    expected = {csm: (200, 403, 403), viewer: (200, 403, 403), manager: (200, 302, 200), admin_user: (200, 302, 200)}
    for user, (view, edit, preview) in expected.items():
        client = Client()
        client.force_login(user)
        assert (client.get(change).status_code, client.post(change, data).status_code) == (view, edit)[:2], user
        assert client.post(PREVIEW, data).status_code == preview, user
    rule.refresh_from_db()
    assert (rule.kind, rule.params) == ("renewal_within", {"days": 30})


def test_the_list_reads_in_plain_english_at_a_fixed_query_count(
    manager_client, make_playbook, manager, settings, django_assert_num_queries
):
    settings.RISK_HIGH_THRESHOLD = 0.7
    playbook = make_playbook(WAIT)
    TriggerRule.objects.create(
        playbook=playbook, kind="risk_enters_high", segment={"plan": ["Enterprise"], "mrrGte": 1000}
    )
    TriggerRule.objects.create(playbook=playbook, kind="renewal_within", params={"days": 60})
    TriggerRule.objects.create(
        playbook=playbook, kind="segment", segment={"riskLevel": ["medium", "high"], "ownerIds": [manager.pk]}
    )
    response = manager_client.get(LIST)
    text = response.content.decode()
    for sentence in (
        "Risk rises to high (≥ 70 %) — plan is Enterprise and MRR ≥ 1,000",
        "Renewal within 60 days",
        f"Every customer where risk level is medium or high and owner is {manager.username}",
    ):
        assert sentence in text
    assert "mrrGte" not in text and "riskLevel" not in text
    # Session, user, role, permissions (2), count, rows, owners' names, risk bands, filter choices, banners.
    with django_assert_num_queries(12), CaptureQueriesContext(connection) as three:
        manager_client.get(LIST)
    for n in range(6):
        TriggerRule.objects.create(
            playbook=make_playbook(WAIT), kind="health_drop", params={"points": n + 1, "days": 30},
            segment={"ownerIds": [manager.pk], "healthLte": 50},
        )  # fmt: skip
    with CaptureQueriesContext(connection) as nine:
        text = manager_client.get(LIST).content.decode()
    assert "Health drops by 6+ points within 30 days — health score ≤ 50 and owner is" in text
    assert len(nine) == len(three)


def test_the_change_page_costs_the_same_with_more_conditions_and_customers(
    manager_client, make_playbook, make_customer, manager, django_assert_num_queries
):
    playbook = make_playbook(WAIT)
    rule = TriggerRule.objects.create(playbook=playbook, kind="segment", segment={"plan": ["Pro"]})
    change = reverse("admin:playbooks_triggerrule_change", args=[rule.pk])
    make_customer(owner=manager, plan="Pro")
    manager_client.get(change)  # the content types' cache, filled once per process
    # Session, user, role, rule, permissions (2), plans, owners, playbook; the saved rule's match
    # count (5); the admin's two banners; the playbook choices.
    with django_assert_num_queries(17), CaptureQueriesContext(connection) as small:
        assert manager_client.get(change).status_code == 200
    for n in range(5):
        make_customer(owner=manager, plan=f"Plan {n}")
    TriggerRule.objects.filter(pk=rule.pk).update(
        segment={"plan": ["Pro", "Plan 1"], "mrrGte": 10, "healthLte": 100, "ownerIds": [manager.pk]}
    )
    with CaptureQueriesContext(connection) as large:
        page = manager_client.get(change)
    assert page.context["rule_preview"].matched_visible == 2
    assert page.context["adminform"].form.segment_rows.total_form_count() == 5  # four conditions and a blank row
    assert len(large) == len(small)


def test_the_rule_form_runs_under_the_strict_policy(manager_client, make_playbook):
    make_playbook(WAIT)
    page = manager_client.get(ADD)
    assert page.status_code == 200
    assert_strict(page)  # its script and styles are our own files; the row specs are JSON data
    html = page.content.decode()
    assert '<script id="rule-fields" type="application/json">' in html
    assert "/static/playbooks/rule_form.js" in html


def test_the_segment_compares_risk_and_health_from_either_side(make_playbook, make_customer):
    playbook = make_playbook(WAIT)
    inside = make_customer(churn_risk=Decimal("0.6000"), health_score=45)
    make_customer(churn_risk=Decimal("0.4000"), health_score=45)  # risk too low
    make_customer(churn_risk=Decimal("0.9000"), health_score=45)  # risk too high
    make_customer(churn_risk=Decimal("0.6000"), health_score=30)  # health too low
    make_customer(churn_risk=Decimal("0.6000"), health_score=80)  # health too high
    rule = TriggerRule.objects.create(
        playbook=playbook,
        kind="segment",
        segment={"riskGte": 0.5, "riskLte": 0.855, "healthGte": 40, "healthLte": 60},
    )
    assert rules.matching_customers(rule, customer_ids=None, now=rule.created_at) == [inside.pk]


def test_the_playbook_page_lists_its_rules_in_words_and_edits_them_only_on_their_form(manager_client, make_playbook):
    playbook = make_playbook(WAIT)
    rule = TriggerRule.objects.create(playbook=playbook, kind="renewal_within", params={"days": 90}, segment={})
    page = manager_client.get(reverse("admin:playbooks_playbook_change", args=[playbook.pk])).content.decode()
    assert "Renewal within 90 days" in page
    assert reverse("admin:playbooks_triggerrule_change", args=[rule.pk]) in page
    assert 'name="rules-0-params"' not in page and 'name="rules-0-segment"' not in page
    assert 'name="rules-0-kind"' not in page


def test_the_playbook_page_reads_its_rules_owners_once_however_many_rules(manager_client, make_playbook, csm):
    playbook = make_playbook(WAIT)
    url = reverse("admin:playbooks_playbook_change", args=[playbook.pk])
    TriggerRule.objects.create(playbook=playbook, kind="segment", segment={"ownerIds": [csm.pk]})
    manager_client.get(url)  # warm caches
    with CaptureQueriesContext(connection) as one:
        manager_client.get(url)
    for _ in range(4):
        TriggerRule.objects.create(playbook=playbook, kind="segment", segment={"ownerIds": [csm.pk]})
    with CaptureQueriesContext(connection) as five:
        page = manager_client.get(url).content.decode()
    assert page.count(f"Every customer where owner is {csm.username}") == 5  # named, not "user <id>"
    assert len(five) == len(one)
