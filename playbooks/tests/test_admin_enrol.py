"""Enrolling customers from the customers changelist: the "Enrol in a playbook…" action's
confirmation page (preview, then confirm), through the service, within the user's portfolio."""

import dataclasses

import pytest
from django.test import Client

from playbooks.models import PlaybookExecution
from playbooks.selectors import EnrolmentPreview
from playbooks.services import enrol

CHANGELIST = "/admin/customers/customer/"
STEPS = [
    {"key": "email", "type": "send_email", "to": "customer", "subject": "Hello {{ customer.name }}", "body": "Hi"},
    {"key": "wait", "type": "wait", "duration": "3d"},
]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _action(client: Client, customers, **extra):
    data = {"action": "enrol_in_playbook", "_selected_action": [c.pk for c in customers], **extra}
    return client.post(CHANGELIST, data)


@pytest.fixture
def playbook(make_playbook):
    return make_playbook(STEPS, name="Win back")


def test_a_manager_enrols_three_selected_customers(manager, make_customer, playbook):
    customers = [make_customer() for _ in range(4)]
    enrol(playbook=playbook, customer_ids=[customers[3].pk], trigger="manual", use_holdout=False)
    client = _client(manager)

    picker = _action(client, customers)
    assert picker.status_code == 200 and b"4 customers selected" in picker.content
    assert b"Win back" in picker.content

    preview = _action(client, customers, playbook=playbook.pk, preview="yes")
    assert dataclasses.replace(preview.context["preview"], steps=[]) == EnrolmentPreview(
        selected=4,
        outside_scope=0,
        will_enrol=3,
        already_running=1,
        otherwise_skipped=0,
        holdout_share=0.0,
        expected_holdout=0,
        steps=[],
    )
    assert b"waits in the review queue" in preview.content
    assert PlaybookExecution.objects.count() == 1  # the preview writes nothing

    done = _action(client, customers, playbook=playbook.pk, previewed=playbook.pk, confirm="yes")
    assert done.status_code == 302
    executions = PlaybookExecution.objects.filter(playbook=playbook, trigger="bulk")
    assert sorted(e.customer_id for e in executions) == sorted(c.pk for c in customers[:3])
    assert all(e.triggered_by_id == manager.pk for e in executions)
    assert PlaybookExecution.objects.filter(customer=customers[3]).count() == 1  # skipped, still one


def test_the_preview_counts_the_holdout_and_auto_send(manager, make_customer, make_playbook):
    playbook = make_playbook(STEPS, holdout_share=0.5)
    playbook.auto_send_customer_emails = True  # a manager's switch, not part of the definition
    playbook.save(update_fields=["auto_send_customer_emails"])
    customers = [make_customer() for _ in range(4)]
    preview = _action(_client(manager), customers, playbook=playbook.pk, preview="yes")
    assert preview.context["preview"].expected_holdout == 2
    assert b"a random 50% share" in preview.content
    assert b"sent without review" in preview.content


def test_a_confirmation_for_another_playbook_than_previewed_enrols_nobody(manager, make_customer, playbook):
    customer = make_customer()
    response = _action(_client(manager), [customer], playbook=playbook.pk, previewed="0", confirm="yes")
    assert response.status_code == 200 and not PlaybookExecution.objects.exists()


def test_a_csm_enrols_only_customers_of_their_portfolio(csm, make_customer, playbook):
    mine, theirs = make_customer(owner=csm), make_customer()
    client = _client(csm)
    preview = _action(client, [mine, theirs], playbook=playbook.pk, preview="yes")
    assert preview.context["preview"].will_enrol == 1 and preview.context["count"] == 1
    _action(client, [mine, theirs], playbook=playbook.pk, previewed=playbook.pk, confirm="yes")
    assert list(PlaybookExecution.objects.values_list("customer_id", flat=True)) == [mine.pk]
    # Only someone else's customer selected: nothing to act on, nobody enrolled.
    _action(client, [theirs], playbook=playbook.pk, previewed=playbook.pk, confirm="yes")
    assert not PlaybookExecution.objects.filter(customer=theirs).exists()


def test_a_viewer_has_no_enrol_action(viewer, make_customer, playbook):
    customer = make_customer()
    client = _client(viewer)
    assert b"enrol_in_playbook" not in client.get(CHANGELIST).content
    _action(client, [customer], playbook=playbook.pk, previewed=playbook.pk, confirm="yes")
    assert not PlaybookExecution.objects.exists()


def test_the_trigger_page_picks_customers_with_the_autocomplete(admin_user, make_customer, playbook):
    customer = make_customer()
    client = _client(admin_user)
    page = client.get(f"/admin/playbooks/playbook/{playbook.pk}/trigger/")
    assert b"admin-autocomplete" in page.content and b"<textarea" not in page.content
    response = client.post(f"/admin/playbooks/playbook/{playbook.pk}/trigger/", {"customer_ids": [customer.pk]})
    assert b"Enrolled 1 of 1" in response.content


def test_select_all_of_a_filtered_list_enrols_the_whole_filtered_list(manager, make_customer, playbook):
    active = [make_customer() for _ in range(3)]
    make_customer(is_active=False)
    client = _client(manager)
    data = {"action": "enrol_in_playbook", "_selected_action": [active[0].pk], "select_across": "1"}
    url = f"{CHANGELIST}?is_active__exact=1"
    preview = client.post(url, {**data, "playbook": playbook.pk, "preview": "yes"})
    assert preview.context["count"] == 3 and preview.context["preview"].will_enrol == 3
    client.post(url, {**data, "playbook": playbook.pk, "previewed": playbook.pk, "confirm": "yes"})
    assert sorted(PlaybookExecution.objects.values_list("customer_id", flat=True)) == [c.pk for c in active]
