"""The playbook editor of the admin: one form per step type (valid steps stored exactly as built,
invalid ones answered on their step and field), reordering and removing, the change page's
queries, who may edit, the dry run of unsaved steps for one of the user's customers, and the
JSON export equal to what the form built."""

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from playbooks.admin import PlaybookEditorForm
from playbooks.models import Playbook, PlaybookExecution

URL = "/admin/playbooks/playbook/"

# One step of each type as the form posts it (form field → value) and as it is then stored.
CASES = {
    "create_intervention": (
        {
            "intervention_type": "Check-in call",
            "priority": "high",
            "assignee": "named",
            "assignee_name": "Sam",
            "due_in_days": "3",
        },
        {
            "intervention_type": "Check-in call",
            "priority": "high",
            "assignee": "named",
            "assignee_name": "Sam",
            "due_in_days": 3,
        },
    ),
    "send_email": (
        {"to": "owner", "subject": "About {{ customer.name }}", "body": "Call them."},
        {"to": "owner", "subject": "About {{ customer.name }}", "body": "Call them."},
    ),
    "notify": (
        {"channel": "slack", "notify_severity": "low", "message": "{{ customer.name }} is at risk"},
        {"channel": "slack", "severity": "low", "message": "{{ customer.name }} is at risk"},
    ),
    "create_alert": (
        {"title": "Risk", "alert_severity": "critical", "message": "Look"},
        {"title": "Risk", "severity": "critical", "message": "Look"},
    ),
    "wait": (
        {"until_field": "support_tickets", "until_op": "eq", "until_value": "0", "timeout": "7d", "check_every": "1h"},
        {"until": {"field": "support_tickets", "op": "eq", "value": 0}, "timeout": "7d", "check_every": "1h"},
    ),
    "condition": (
        {"if_field": "plan", "if_op": "in", "if_value": "Pro, Enterprise", "then": "end"},
        {"if": {"field": "plan", "op": "in", "value": ["Pro", "Enterprise"]}, "then": "end"},
    ),
    "update_customer": (
        {"set_plan": "Enterprise", "set_owner": "csm01"},
        {"fields": {"plan": "Enterprise", "owner": "csm01"}},
    ),
    "webhook": (
        {"url": "https://hooks.example.com/churn", "payload": "source: churnshield\nlevel: 2", "webhook_timeout": "5"},
        {"url": "https://hooks.example.com/churn", "payload": {"source": "churnshield", "level": 2}, "timeout": 5.0},
    ),
}

# One invalid step of each type: the form fields posted, and the field the error must be on.
INVALID = {
    "create_intervention": ({"intervention_type": "Call", "assignee": "named"}, "assignee_name"),
    "send_email": ({"to": "not an address", "subject": "Hi", "body": "x"}, "to"),
    "notify": ({"message": "{% if %}"}, "message"),
    "create_alert": ({"title": "", "message": "x"}, "title"),
    "wait": ({"duration": "soon"}, "duration"),
    "condition": ({"if_field": "mrr", "if_op": "gt", "if_value": "lots", "then": "end"}, "if_value"),
    "update_customer": ({}, "set_plan"),
    "webhook": ({"url": "http://10.0.0.1/hook"}, "url"),
}


def form_data(steps: list[dict], **playbook: object) -> dict:
    """The change form's POST for the playbook fields and the given step forms (in order)."""
    data = {
        "name": "Editor test",
        "description": "",
        "intervention_type": "",
        "exit-TOTAL_FORMS": "0",
        "exit-INITIAL_FORMS": "0",
        "holdout_share": "0",
        "reenrol_days": "30",
        "is_active": "on",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        **playbook,
    }
    for index, step in enumerate(steps):
        for name, value in step.items():
            data[f"steps-{index}-{name}"] = value
        data.setdefault(f"steps-{index}-ORDER", str(index + 1))
    return data


@pytest.fixture(autouse=True)
def _loopback_off(settings):
    settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = False


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(CASES))
def test_each_step_type_builds_the_step_the_definition_stores(kind):
    posted, stored = CASES[kind]
    form = PlaybookEditorForm(form_data([{"type": kind, "key": "only", "name": "The step", **posted}]))

    assert form.is_valid(), (form.errors, form.steps_formset.errors)
    step = form.instance.steps[0]
    assert step == {"type": kind, "key": "only", "name": "The step", **stored}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(INVALID))
def test_an_invalid_step_is_answered_on_its_step_and_field(kind):
    posted, field = INVALID[kind]
    valid = {"type": "notify", "key": "first", "message": "fine"}
    form = PlaybookEditorForm(form_data([valid, {"type": kind, "key": "second", **posted}]))

    assert not form.is_valid()
    assert form.non_field_errors() == ["Some steps need attention: see the steps below."]
    first, second = form.steps_formset.forms
    assert first.errors == {}
    assert list(second.errors) == [field], second.errors
    assert "{" not in str(second.errors[field])  # words, not a JSON string
    assert Playbook.objects.count() == 0


@pytest.mark.django_db
def test_branches_must_point_forward_and_the_error_sits_on_the_branch():
    steps = [
        {"type": "notify", "key": "hello", "message": "hi"},
        {"type": "condition", "key": "check", "if_field": "health", "if_op": "lt", "if_value": "40", "then": "hello"},
    ]
    form = PlaybookEditorForm(form_data(steps))

    assert not form.is_valid()
    assert form.steps_formset.forms[1].errors == {"then": ["must point to a later step (flow is forward only)"]}


@pytest.mark.django_db
def test_the_order_field_reorders_and_remove_drops_a_step():
    steps = [
        {"type": "notify", "key": "a", "message": "first", "ORDER": "3"},
        {"type": "notify", "key": "b", "message": "dropped", "ORDER": "1", "DELETE": "on"},
        {"type": "wait", "key": "c", "duration": "90", "ORDER": "2"},
    ]
    form = PlaybookEditorForm(form_data(steps))

    assert form.is_valid(), form.steps_formset.errors
    assert [(s["key"], s["type"]) for s in form.instance.steps] == [("c", "wait"), ("a", "notify")]
    assert form.instance.steps[0]["duration"] == 90  # bare seconds stay a number


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_manager_edits_steps_by_form_and_the_export_is_what_the_form_built(manager, make_playbook):
    playbook = make_playbook([{"type": "notify", "key": "old", "message": "old"}], name="Editor test")
    client = _client(manager)
    steps = [
        {"type": "create_intervention", "key": "task", **CASES["create_intervention"][0]},
        {"type": "condition", "key": "check", **CASES["condition"][0], "then": "alert"},
        {"type": "notify", "key": "ping", **CASES["notify"][0]},
        {"type": "create_alert", "key": "alert", **CASES["create_alert"][0]},
    ]
    data = form_data(steps, **{"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0"})

    response = client.post(f"{URL}{playbook.pk}/change/", data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    playbook.refresh_from_db()
    built = [
        {"type": "create_intervention", "key": "task", **CASES["create_intervention"][1]},
        {"type": "condition", "key": "check", **CASES["condition"][1], "then": "alert"},
        {"type": "notify", "key": "ping", **CASES["notify"][1]},
        {"type": "create_alert", "key": "alert", **CASES["create_alert"][1]},
    ]
    assert playbook.steps == built
    export = client.post(URL, {"action": "export_json", "_selected_action": [playbook.pk]})
    assert json.loads(export.content)[0]["steps"] == built


def test_an_invalid_post_shows_the_error_on_the_step_and_saves_nothing(manager, make_playbook):
    playbook = make_playbook([{"type": "notify", "key": "old", "message": "old"}], name="Editor test")
    data = form_data(
        [{"type": "send_email", "key": "mail", "to": "nobody", "subject": "Hi", "body": "x"}],
        **{"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0"},
    )

    response = _client(manager).post(f"{URL}{playbook.pk}/change/", data)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "pb-step-invalid" in html
    assert '{"steps"' not in html and "{&quot;steps" not in html
    playbook.refresh_from_db()
    assert playbook.steps == [
        {"type": "notify", "key": "old", "message": "old", "severity": "medium", "channel": "in_app"}
    ]


def test_the_change_page_renders_each_step_in_a_fixed_number_of_queries(
    manager, make_playbook, django_assert_num_queries
):
    few = make_playbook([{"type": "notify", "key": "a", "message": "x"}])
    many = make_playbook(
        [{"type": "notify", "key": f"n{i}", "message": "x"} for i in range(8)]
        + [
            {"type": "wait", "key": "w", "duration": "1d"},
            {"type": "webhook", "key": "h", "url": "https://a.example/x"},
        ]
    )
    client = _client(manager)
    client.get(f"{URL}{few.pk}/change/")  # warm the session and content types

    with django_assert_num_queries(9) as few_queries:
        assert client.get(f"{URL}{few.pk}/change/").status_code == 200
    with django_assert_num_queries(len(few_queries.captured_queries)):
        page = client.get(f"{URL}{many.pk}/change/")
    assert len(re.findall(r'name="steps-\d+-type"', page.content.decode())) == 10


def test_a_csm_reads_the_steps_without_forms(csm, make_playbook):
    playbook = make_playbook(
        [
            {"type": "wait", "key": "pause", "duration": "3d"},
            {"type": "condition", "key": "check", "if": {"field": "nps", "op": "lte", "value": 6}, "then": "end"},
            {"type": "notify", "key": "n", "message": "Call them"},
        ],
        name="Read only",
    )

    page = _client(csm).get(f"{URL}{playbook.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "steps-TOTAL_FORMS" not in html and "data-step-editor" not in html
    assert "Wait 3d" in html and "JSON of the saved steps" in html
    assert "If nps is at most 6: end the playbook; otherwise continue." in html
    assert "Notify the team: Call them" in html
    refused = _client(csm).post(f"{URL}{playbook.pk}/editor-dry-run/", {})
    assert refused.status_code == 403


def test_the_dry_run_shows_the_unsaved_steps_for_a_customer_of_the_portfolio_and_writes_nothing(
    manager, csm, make_customer, make_playbook
):
    playbook = make_playbook([{"type": "notify", "key": "old", "message": "old"}], name="Editor test")
    customer = make_customer(owner=csm, name="Initech", support_tickets=3)
    steps = [
        {"type": "condition", "key": "check", "if_field": "support_tickets", "if_op": "gt", "if_value": "2"},
        {"type": "send_email", "key": "mail", "to": "customer", "subject": "Hi {{ customer.name }}", "body": "b"},
    ]
    steps[0]["then"] = "mail"
    data = form_data(steps, **{"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0", "dryrun-customer": customer.pk})

    response = _client(manager).post(f"{URL}{playbook.pk}/editor-dry-run/", data)

    assert response.status_code == 200
    assert response.context["rows"] == [
        ["check", "Branch on a condition", "branch: the condition is true today → mail"],
        ["mail", "Send an e-mail", f"e-mail {customer.email}: 'Hi Initech' (queued for review)"],
    ]
    assert "Initech would enrol today." in response.context["message"]
    playbook.refresh_from_db()
    assert playbook.steps[0]["key"] == "old"
    assert PlaybookExecution.objects.count() == 0


def test_a_csm_reads_the_causes_as_the_editors_labels(csm, manager, make_playbook):
    playbook = make_playbook([{"type": "wait", "key": "pause", "duration": "3d"}], name="Causes")
    Playbook.objects.filter(pk=playbook.pk).update(causes=["Support issues", "Low engagement", "Retired cause"])

    read_only = _client(csm).get(f"{URL}{playbook.pk}/change/").content.decode()
    editor = _client(manager).get(f"{URL}{playbook.pk}/change/").content.decode()

    # The editor's ticks, in its order; a cause it no longer knows last, as stored.
    ticked = re.findall(r'<input type="checkbox" name="causes" value="([^"]*)"[^>]*checked', editor)
    assert ticked == ["Low engagement", "Support issues", "Retired cause"]
    field = re.search(r'<div class="readonly">([^<]*)</div>', read_only[read_only.index("Causes:") :])
    assert field.group(1) == "Low engagement, Support issues, Retired cause"
    assert "[&quot;Support issues&quot;" not in read_only and '["Support issues"' not in read_only


def test_a_playbook_without_causes_reads_as_none(csm, make_playbook):
    playbook = make_playbook([{"type": "wait", "key": "pause", "duration": "3d"}], name="No causes")

    read_only = _client(csm).get(f"{URL}{playbook.pk}/change/").content.decode()

    field = re.search(r'<div class="readonly">([^<]*)</div>', read_only[read_only.index("Causes:") :])
    assert field.group(1) == "—"


def test_the_dry_run_refuses_a_customer_outside_the_portfolio(csm, other_csm, make_user, make_customer, make_playbook):
    # A manager sees every customer; the check is the scope, so a CSM given change rights shows it.
    from django.contrib.auth.models import Permission

    csm.user_permissions.add(Permission.objects.get(codename="change_playbook"))
    playbook = make_playbook([{"type": "notify", "key": "old", "message": "old"}], name="Editor test")
    theirs = make_customer(owner=other_csm)
    data = form_data(
        [{"type": "notify", "key": "n", "message": "x"}],
        **{"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0", "dryrun-customer": theirs.pk},
    )

    response = _client(csm).post(f"{URL}{playbook.pk}/editor-dry-run/", data)

    assert response.status_code == 400
    assert response.context["problems"] == ["Choose one of your customers for the dry run."]


@pytest.mark.django_db
def test_a_combined_condition_the_cards_cannot_show_is_kept_as_stored():
    group = {"any": [{"field": "health", "op": "lt", "value": 40}, {"field": "nps", "op": "lte", "value": 6}]}
    playbook = Playbook(
        name="Group",
        steps=[
            {"type": "condition", "key": "check", "if": group, "then": "end"},
            {"type": "notify", "key": "n", "message": "x"},
        ],
    )
    unbound = PlaybookEditorForm(instance=playbook)
    posted = {
        f"steps-{i}-{name}": value
        for i, form in enumerate(unbound.steps_formset.forms)
        for name, value in form.initial.items()
        if value not in (None, "")
    }
    data = form_data([{}, {}]) | posted

    form = PlaybookEditorForm(data, instance=playbook)

    assert form.is_valid(), form.steps_formset.errors
    assert form.instance.steps[0] == {"type": "condition", "key": "check", "if": group, "then": "end"}
    assert "Now a combined condition" in unbound.steps_formset.forms[0].fields["if_field"].help_text


def test_a_new_playbook_starts_with_one_blank_step_card_and_is_created_from_it(manager):
    client = _client(manager)

    page = client.get(f"{URL}add/")

    html = page.content.decode()
    assert page.status_code == 200
    assert len(re.findall(r'name="steps-\d+-type"', html)) == 1
    assert "Save the playbook to dry-run it" in html
    data = form_data(
        [{"type": "wait", "key": "pause", "duration": "1h"}], **{"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0"}
    )
    assert client.post(f"{URL}add/", data).status_code == 302
    assert Playbook.objects.get(name="Editor test").steps == [{"type": "wait", "key": "pause", "duration": "1h"}]


def test_steps_stored_without_validation_still_open_for_readers_and_editors(csm, manager):
    playbook = Playbook.objects.create(name="Hand-made", steps=[{"action": "call"}, "text"])

    for user in (csm, manager):
        page = _client(user).get(f"{URL}{playbook.pk}/change/")
        assert page.status_code == 200
    assert "Not a valid step" in _client(csm).get(f"{URL}{playbook.pk}/change/").content.decode()


def test_the_editor_page_keeps_the_strict_content_security_policy(manager, make_playbook):
    from tests.test_csp import assert_strict

    playbook = make_playbook([{"type": "notify", "key": "a", "message": "x"}])

    page = _client(manager).get(f"{URL}{playbook.pk}/change/")

    assert_strict(page)
    assert '<script src="/static/playbooks/editor.js"></script>' in page.content.decode()


@pytest.mark.django_db
def test_causes_are_ticked_from_the_known_list_and_a_retired_one_is_kept():
    wait = [{"type": "wait", "key": "pause", "duration": "1h"}]
    form = PlaybookEditorForm(form_data(wait, causes=["Low engagement", "Support issues"]))
    assert form.is_valid(), form.errors
    assert form.save().causes == ["Low engagement", "Support issues"]

    form = PlaybookEditorForm(form_data(wait, causes=["Made up"]))
    assert not form.is_valid() and "causes" in form.errors

    retired = Playbook.objects.create(name="Old", steps=wait, causes=["A cause no longer modelled"])
    form = PlaybookEditorForm(form_data(wait, name="Old", causes=["A cause no longer modelled"]), instance=retired)
    assert form.is_valid(), form.errors
    assert form.save().causes == ["A cause no longer modelled"]


def exit_rows(*rows: dict, initial: int = 0) -> dict:
    data = {"exit-TOTAL_FORMS": str(len(rows)), "exit-INITIAL_FORMS": str(initial)}
    for index, row in enumerate(rows):
        data.update({f"exit-{index}-{name}": value for name, value in row.items()})
    return data


@pytest.mark.django_db
def test_exit_conditions_are_rows_blank_ones_skipped_and_a_bad_value_is_an_error_on_its_row():
    wait = [{"type": "wait", "key": "pause", "duration": "1h"}]
    rows = exit_rows(
        {"exit_field": "risk", "exit_op": "lt", "exit_value": "0.3"},
        {"exit_field": "", "exit_op": "eq", "exit_value": ""},
        {"exit_field": "plan", "exit_op": "in", "exit_value": "Free, Trial"},
    )
    form = PlaybookEditorForm({**form_data(wait), **rows})
    assert form.is_valid(), (form.errors, [row.errors for row in form.exit_formset])
    assert form.save().exit_conditions == [
        {"field": "risk", "op": "lt", "value": 0.3},
        {"field": "plan", "op": "in", "value": ["Free", "Trial"]},
    ]

    bad = exit_rows(
        {"exit_field": "risk", "exit_op": "lt", "exit_value": "0.3"}, {"exit_field": "mrr", "exit_value": "lots"}
    )
    form = PlaybookEditorForm({**form_data(wait, name="Other"), **bad})
    assert not form.is_valid()
    assert form.exit_formset.forms[1].errors == {"exit_value": ["must be a number"]}
    assert not form.exit_formset.forms[0].errors


@pytest.mark.django_db
def test_an_exit_row_is_removed_and_a_combined_condition_is_kept_as_stored(manager, make_playbook):
    combined = {"any": [{"field": "nps", "op": "gte", "value": 9}, {"field": "risk", "op": "lt", "value": 0.2}]}
    playbook = make_playbook([{"type": "wait", "key": "pause", "duration": "1h"}])
    playbook.exit_conditions = [{"field": "is_active", "op": "eq", "value": False}, combined]
    playbook.save()
    client = Client()
    client.force_login(manager)
    url = reverse("admin:playbooks_playbook_change", args=[playbook.pk])
    page = client.get(url)
    exits = page.context["exit_formset"]
    assert exits.forms[0].initial == {"exit_field": "is_active", "exit_op": "eq", "exit_value": "false"}
    assert json.loads(exits.forms[1].initial["exit_group"]) == combined
    assert "(nps is at least 9 or risk is less than 0.2)" in page.content.decode()
    data = form_data(
        [{"type": "wait", "key": "pause", "duration": "1h"}],
        name=playbook.name,
        **{"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0"},
        **exit_rows(
            {"exit_field": "is_active", "exit_op": "eq", "exit_value": "false", "DELETE": "on"},
            {"exit_group": json.dumps(combined)},
            initial=2,
        ),
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    playbook.refresh_from_db()
    assert playbook.exit_conditions == [combined]


@pytest.mark.django_db
def test_a_csm_reads_the_exit_conditions_in_words(csm, make_playbook):
    playbook = make_playbook([{"type": "wait", "key": "pause", "duration": "1h"}])
    playbook.exit_conditions = [{"field": "risk", "op": "lt", "value": 0.3}]
    playbook.save()
    client = Client()
    client.force_login(csm)
    page = client.get(reverse("admin:playbooks_playbook_change", args=[playbook.pk]))
    assert page.context["exit_formset"] is None
    assert "risk is less than 0.3" in page.content.decode()
    assert 'name="exit-0-exit_field"' not in page.content.decode()
