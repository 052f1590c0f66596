"""Automation that is safe on day one: the review queue for customer e-mails (approve, edit, discard,
bulk, scope), auto-send and its daily cap, the go-ahead before a rule enrols by itself, risk-gated
default rules, and due dates on playbook tasks. E-mail goes to a real SMTP server on loopback."""

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.exceptions import ConflictError, NotFoundError
from customers.models import Customer
from customers.selectors import risk_thresholds
from interventions.models import Intervention
from playbooks import approvals, rules, selectors, services, tasks
from playbooks.defaults import seed_default_playbooks
from playbooks.models import EmailReview, Playbook, PlaybookExecution, PlaybookStepRun, TriggerRule
from tests.helpers import make_prediction

pytestmark = pytest.mark.django_db
EMAIL_PLAYBOOK = [
    {"key": "task", "type": "create_intervention", "intervention_type": "Call",
     "description": "Call {{ customer.name }}"},
    {"key": "email", "type": "send_email", "to": "customer", "subject": "Hello {{ customer.company }}",
     "body": "Dear {{ customer.name }}, your plan is {{ customer.plan }}."},
    {"key": "after", "type": "create_alert", "title": "Mailed {{ customer.name }}", "message": "done"},
]  # fmt: skip


def start(playbook, *customers):
    executions = services.enrol(playbook=playbook, customer_ids=[c.pk for c in customers], trigger="manual")
    assert len(executions) == len(customers)
    return [PlaybookExecution.objects.get(pk=e.pk) for e in sorted(executions, key=lambda e: e.customer_id)]


def auto_send(playbook) -> Playbook:
    Playbook.objects.filter(pk=playbook.pk).update(auto_send_customer_emails=True)
    playbook.refresh_from_db()
    return playbook


def recipients(smtp) -> list[str]:
    return [message["X-Envelope-To"] for message in smtp.messages]


# --- The review queue ---------------------------------------------------------------------------


def test_customer_email_waits_for_review_and_approval_sends_it_once(
    make_playbook, make_customer, csm, smtp, django_capture_on_commit_callbacks
):
    playbook = make_playbook(EMAIL_PLAYBOOK, name="Mailer")
    customer = make_customer(owner=csm, company="Acme", plan="Gold")
    with django_capture_on_commit_callbacks(execute=True):
        (execution,) = start(playbook, customer)
    execution.refresh_from_db()
    # Nothing went out: the execution is parked at the e-mail step with a pending review.
    assert smtp.messages == []
    assert (execution.status, execution.current_step, execution.next_run_at) == ("running", "email", None)
    review = EmailReview.objects.get()
    assert (review.status, review.reason, review.to) == ("pending", "review", customer.email)
    assert (review.subject, review.body) == ("Hello Acme", f"Dear {customer.name}, your plan is Gold.")
    assert (review.playbook_id, review.customer_id, review.execution_id) == (playbook.pk, customer.pk, execution.pk)
    run = PlaybookStepRun.objects.get(execution=execution, step_key="email")
    assert (run.status, run.output["reviewId"]) == ("waiting", review.pk)
    # The task before the e-mail has a due date: three days after it was created.
    task = Intervention.objects.get(pk=execution.intervention_id)
    assert task.due_date - run.started_at == dt.timedelta(days=3)

    # The owning CSM approves with an edited subject: exactly one e-mail, the edited one.
    with django_capture_on_commit_callbacks(execute=True):
        approvals.email_review_approve(user=csm, review_id=review.pk, subject="Hello from us")
    assert recipients(smtp) == [customer.email]
    assert smtp.messages[0]["Subject"] == "Hello from us"
    assert smtp.messages[0]["X-Idempotency-Key"] == f"playbook-{execution.pk}-email"
    assert smtp.messages[0].get_payload().strip() == f"Dear {customer.name}, your plan is Gold."
    execution.refresh_from_db()
    review.refresh_from_db()
    assert execution.status == "completed"
    assert [(s["key"], s["status"]) for s in execution.result["steps"]] == [
        ("task", "succeeded"),
        ("email", "succeeded"),
        ("after", "succeeded"),
    ]
    assert (review.status, review.decided_by, review.is_edited) == ("approved", csm, True)
    assert review.sent_at is not None

    # Approving again (a double click) sends nothing more; editing a decided e-mail is a conflict.
    with django_capture_on_commit_callbacks(execute=True):
        approvals.email_review_approve(user=csm, review_id=review.pk)
    with pytest.raises(ConflictError):
        approvals.email_review_approve(user=csm, review_id=review.pk, body="changed")
    assert len(smtp.messages) == 1


def test_discard_sends_nothing_and_the_execution_skips_the_step(
    make_playbook, make_customer, manager, smtp, django_capture_on_commit_callbacks
):
    playbook = make_playbook(EMAIL_PLAYBOOK)
    customer = make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        (execution,) = start(playbook, customer)
    review = EmailReview.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        approvals.email_review_discard(user=manager, review_id=review.pk, note="too pushy")
    assert smtp.messages == []
    execution.refresh_from_db()
    assert execution.status == "completed"
    assert [(s["key"], s["status"]) for s in execution.result["steps"]] == [
        ("task", "succeeded"),
        ("email", "skipped"),
        ("after", "succeeded"),
    ]
    review.refresh_from_db()
    assert (review.status, review.decided_by, review.note, review.sent_at) == ("discarded", manager, "too pushy", None)
    with pytest.raises(ConflictError):
        approvals.email_review_approve(user=manager, review_id=review.pk)
    assert smtp.messages == []


def test_bulk_approve_in_the_admin_sends_one_email_each(
    make_playbook, make_customer, manager, smtp, django_capture_on_commit_callbacks
):
    playbook = make_playbook(EMAIL_PLAYBOOK)
    customers = [make_customer() for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        start(playbook, *customers)
    by_customer = dict(EmailReview.objects.values_list("customer_id", "pk"))
    reviews = [by_customer[c.pk] for c in customers]
    assert len(reviews) == 3 and smtp.messages == []
    client = Client()
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:playbooks_emailreview_changelist"),
            {"action": "approve_selected", "_selected_action": reviews[:2]},
        )
    assert response.status_code == 302
    assert sorted(recipients(smtp)) == sorted(c.email for c in customers[:2])
    assert [EmailReview.objects.get(pk=pk).status for pk in reviews] == ["approved", "approved", "pending"]
    # The review page: preview, edit, approve.
    page = client.get(reverse("admin:playbooks_emailreview_review", args=[reviews[2]]))
    assert page.status_code == 200 and b"Approve and send" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:playbooks_emailreview_review", args=[reviews[2]]),
            {"subject": "Edited", "body": "Short note.", "_approve": "1"},
        )
    assert response.status_code == 302
    assert len(smtp.messages) == 3
    assert (smtp.messages[2]["Subject"], smtp.messages[2].get_payload().strip()) == ("Edited", "Short note.")


def test_the_queue_is_portfolio_scoped(
    make_playbook, make_customer, csm, other_csm, viewer, smtp, django_capture_on_commit_callbacks
):
    playbook = make_playbook(EMAIL_PLAYBOOK)
    mine, theirs = make_customer(owner=csm), make_customer(owner=other_csm)
    with django_capture_on_commit_callbacks(execute=True):
        start(playbook, mine, theirs)
    my_review = EmailReview.objects.get(customer=mine)
    their_review = EmailReview.objects.get(customer=theirs)
    client = Client()
    client.force_login(csm)
    listing = client.get(reverse("admin:playbooks_emailreview_changelist"))
    assert listing.status_code == 200
    assert [r.pk for r in listing.context["cl"].result_list] == [my_review.pk]
    assert client.get(reverse("admin:playbooks_emailreview_review", args=[their_review.pk])).status_code == 404
    # A bulk action over a forged selection touches only the CSM's own rows.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:playbooks_emailreview_changelist"),
            {"action": "approve_selected", "_selected_action": [my_review.pk, their_review.pk]},
        )
    assert recipients(smtp) == [mine.email]
    with pytest.raises(NotFoundError):
        approvals.email_review_discard(user=csm, review_id=their_review.pk)
    with pytest.raises(PermissionDenied):
        approvals.email_review_discard(user=viewer, review_id=their_review.pk)
    their_review.refresh_from_db()
    assert their_review.status == "pending"
    assert len(smtp.messages) == 1


def test_cancelling_takes_the_email_off_the_queue(
    make_playbook, make_customer, manager, smtp, django_capture_on_commit_callbacks
):
    playbook = make_playbook(EMAIL_PLAYBOOK)
    with django_capture_on_commit_callbacks(execute=True):
        (execution,) = start(playbook, make_customer())
    services.execution_cancel(user=manager, execution_id=execution.pk)
    review = EmailReview.objects.get()
    assert (review.status, review.note) == ("discarded", "execution cancelled")
    with pytest.raises(ConflictError):
        approvals.email_review_approve(user=manager, review_id=review.pk)
    assert smtp.messages == []


# --- Auto-send and the daily cap ----------------------------------------------------------------


def test_auto_send_sends_up_to_the_daily_cap_then_queues(
    make_playbook, make_customer, smtp, settings, django_capture_on_commit_callbacks
):
    settings.PLAYBOOK_CUSTOMER_EMAIL_DAILY_CAP = 2
    playbook = auto_send(make_playbook(EMAIL_PLAYBOOK))
    other = auto_send(make_playbook(EMAIL_PLAYBOOK))  # its own cap
    customers = [make_customer() for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        start(playbook, *customers)
        start(other, customers[2])
    review = EmailReview.objects.get()  # the third of the capped playbook's e-mails
    assert (review.playbook_id, review.reason, review.status) == (playbook.pk, "daily_cap", "pending")
    sent = [c.email for c in customers if c.pk != review.customer_id] + [customers[2].email]
    assert sorted(recipients(smtp)) == sorted(sent)
    auto = PlaybookStepRun.objects.filter(step_key="email", output__autoSent=True, status="succeeded")
    assert auto.count() == 3


def test_only_managers_turn_auto_send_on(make_playbook, csm, manager):
    playbook = make_playbook(EMAIL_PLAYBOOK)
    with pytest.raises(PermissionDenied):
        approvals.playbook_auto_send_set(user=csm, playbook_id=playbook.pk, enabled=True)
    playbook.refresh_from_db()
    assert playbook.auto_send_customer_emails is False
    approvals.playbook_auto_send_set(user=manager, playbook_id=playbook.pk, enabled=True)
    playbook.refresh_from_db()
    assert playbook.auto_send_customer_emails is True
    # In the admin the switch is read-only for anyone but a manager or an admin.
    admin_page = reverse("admin:playbooks_playbook_change", args=[playbook.pk])
    client = Client()
    client.force_login(manager)
    form = client.get(admin_page).context["adminform"].form
    assert "auto_send_customer_emails" in form.fields
    client.force_login(csm)
    response = client.get(admin_page)
    assert response.status_code == 200
    assert "auto_send_customer_emails" not in response.context["adminform"].form.fields


def test_a_colleague_address_is_not_customer_facing(
    make_playbook, make_customer, csm, manager, smtp, django_capture_on_commit_callbacks
):
    playbook = make_playbook(
        [{"key": "tell", "type": "send_email", "to": manager.email, "subject": "FYI", "body": "{{ customer.name }}"},
         {"key": "owner", "type": "send_email", "to": "owner", "subject": "Yours", "body": "{{ customer.name }}"}]
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        start(playbook, make_customer(owner=csm))
    assert sorted(recipients(smtp)) == sorted([manager.email, csm.email])
    assert not EmailReview.objects.exists()


# --- Rules: the go-ahead and the risk gate ------------------------------------------------------


def test_a_rule_enrols_by_itself_only_after_a_go_ahead_and_a_change_pauses_it(
    make_playbook, make_customer, manager, csm
):
    playbook = make_playbook([{"key": "w", "type": "wait", "duration": "1d"}])
    rule = TriggerRule.objects.create(playbook=playbook, kind="segment", segment={"plan": ["Gold"]})
    gold = [make_customer(plan="Gold") for _ in range(2)]
    make_customer(plan="Pro")
    assert services.evaluate_rules() == {}
    assert not PlaybookExecution.objects.exists()
    # A person can still enrol by hand.
    assert services.playbook_bulk_trigger(user=csm, playbook_id=playbook.pk, customer_ids=[]).enrolled == 0
    with pytest.raises(PermissionDenied):
        approvals.trigger_rule_approve(user=csm, rule_id=rule.pk)
    rule = approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)
    assert (rule.approved_by, rule.approval_summary["wouldEnrol"], rule.approval_summary["wouldEmail"]) == (
        manager,
        2,
        0,
    )
    assert rule.approval_summary["text"] == "would enrol 2 customers, e-mail 0 (each e-mail waits for review)"
    assert services.evaluate_rules() == {rule.pk: 2}
    assert set(PlaybookExecution.objects.values_list("customer_id", flat=True)) == {c.pk for c in gold}
    # An edited rule is paused again until the next go-ahead.
    rule.segment = {"plan": ["Pro"]}
    rule.save()
    assert services.evaluate_rules() == {}
    assert PlaybookExecution.objects.count() == 2


def test_switching_a_rule_on_again_in_the_admin_pauses_it(make_playbook, manager):
    playbook = make_playbook([{"key": "w", "type": "wait", "duration": "1d"}])
    rule = TriggerRule.objects.create(playbook=playbook, kind="segment", segment={"plan": ["Gold"]})
    approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)
    client = Client()
    client.force_login(manager)
    change = reverse("admin:playbooks_triggerrule_change", args=[rule.pk])
    data = {
        "playbook": playbook.pk,
        "kind": "segment",
        **{f"segment-{name}": value for name, value in (("TOTAL_FORMS", "1"), ("INITIAL_FORMS", "0"))},
        **{"segment-0-field": "plan", "segment-0-op": "in", "segment-0-plans": ["Gold"]},
    }
    assert client.post(change, data).status_code == 302  # is_active unticked: switched off
    assert client.post(change, {**data, "is_active": "on"}).status_code == 302
    rule.refresh_from_db()
    assert (rule.approved_at, rule.approved_by, rule.is_active, rule.segment) == (None, None, True, {"plan": ["Gold"]})
    assert rules.approved_rules() == []
    # The go-ahead page shows the dry run and gives the go-ahead on POST.
    page = reverse("admin:playbooks_triggerrule_go_ahead", args=[rule.pk])
    assert b"would enrol 0 customers, e-mail 0" in client.get(page).content
    assert client.post(page).status_code == 200
    rule.refresh_from_db()
    assert rules.is_approved(rule) and rule.approved_by == manager


def test_cause_appears_fires_on_a_new_cause_of_an_at_risk_customer_only(make_playbook, make_customer, manager):
    playbook = make_playbook([{"key": "w", "type": "wait", "duration": "1d"}])
    rule = TriggerRule.objects.create(playbook=playbook, kind="cause_appears", params={"cause": "Support issues"})
    approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)
    tickets = [{"cause": "Support issues", "factor": "Tickets", "impact": 0.4, "value": "5"}]
    new_at_risk, new_low, first_ever, old_cause = (make_customer() for _ in range(4))
    make_prediction(new_at_risk, probability="0.4000", days_ago=2)
    make_prediction(new_at_risk, probability="0.6000", causes=tickets)
    make_prediction(new_low, probability="0.3000", days_ago=2)
    make_prediction(new_low, probability="0.3000", causes=tickets)  # new cause, but low risk
    make_prediction(first_ever, probability="0.9000", causes=tickets)  # nothing to compare with
    make_prediction(old_cause, probability="0.9000", causes=tickets, days_ago=2)
    make_prediction(old_cause, probability="0.9000", causes=tickets)  # not new
    assert services.evaluate_rules() == {rule.pk: 1}
    assert list(PlaybookExecution.objects.values_list("customer_id", flat=True)) == [new_at_risk.pk]


def test_default_rules_gate_onboarding_to_new_at_risk_accounts(make_customer, manager):
    seed_default_playbooks()
    # Every rule is gated by risk but the renewal review's, which only creates a task for the CSM.
    ungated = [r for r in TriggerRule.objects.all() if r.segment.get("riskLevel") != ["medium", "high"]]
    assert [(r.kind, r.playbook.name) for r in ungated] == [("renewal_within", "Renewal Reminder")]
    assert {step["type"] for step in ungated[0].playbook.steps} == {"create_intervention", "notify"}
    (rule,) = TriggerRule.objects.filter(playbook__name="Onboarding Call")
    approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)
    onboarding = [{"cause": "Onboarding incomplete", "factor": "Setup", "impact": 0.5, "value": "2 of 6"}]
    now = timezone.now()
    new = make_customer(signup_date=now - dt.timedelta(days=5), churn_risk=Decimal("0.6000"))
    old = make_customer(signup_date=now - dt.timedelta(days=200), churn_risk=Decimal("0.6000"))
    new_low = make_customer(signup_date=now - dt.timedelta(days=5), churn_risk=Decimal("0.0070"))
    for customer, probability in ((new, "0.6000"), (old, "0.6000"), (new_low, "0.0070")):
        make_prediction(customer, probability="0.3000", days_ago=2)
        make_prediction(customer, probability=probability, causes=onboarding)
    assert services.evaluate_rules() == {rule.pk: 1}
    assert list(PlaybookExecution.objects.values_list("customer_id", flat=True)) == [new.pk]
    # Importing the same definitions again keeps the go-ahead of an unchanged rule (a new row).
    seed_default_playbooks()
    assert [r.approved_by for r in rules.approved_rules()] == [manager]


# --- A fresh book, as `make run` leaves it ------------------------------------------------------


def test_a_fresh_demo_book_emails_no_customer_and_enrols_only_after_a_go_ahead(
    smtp, settings, django_capture_on_commit_callbacks
):
    """seed_demo, train_model, score_customers, then the beat's claimer, all in-process (eager
    tasks): the first scoring run enrols no one and e-mails no customer. Then a manager gives each
    shipped rule the go-ahead on its dry run: each enrols exactly the dry run's N, all at risk, and
    every customer e-mail they reach waits in the queue."""
    settings.PLAYBOOK_CLAIM_FOLLOW_SECONDS = 0
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", "--customers", "1000", "--seed", "7", stdout=out)
        call_command("train_model", "--if-no-model", stdout=out)
        call_command("score_customers", stdout=out)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.claim_due_executions()
    customer_addresses = set(Customer.objects.values_list("email", flat=True))
    by_rules = PlaybookExecution.objects.filter(trigger="rule")
    assert by_rules.count() == 0
    assert [to for to in recipients(smtp) if to in customer_addresses] == []
    assert not EmailReview.objects.exists()

    manager = get_user_model().objects.filter(groups__name="manager").order_by("pk").first()
    # The executive check-in ends once the account is back in the low band, which follows the
    # champion's thresholds (on a calibrated book of low base rate the high band may start near
    # 15 %): it releases none of the customers its own rules would enrol at once.
    check_in = Playbook.objects.get(name="Executive Check-in")
    plans = selectors.dry_run(user=manager, playbook=check_in).customers
    assert plans and [p.customer_id for p in plans if p.exits_immediately] == []
    previews = {}
    for rule in rules.active_rules():
        approvals.trigger_rule_approve(user=manager, rule_id=rule.pk)
        rule.refresh_from_db()
        previews[rule.pk] = rule.approval_summary
        with django_capture_on_commit_callbacks(execute=True):
            started = tasks.evaluate_trigger_rules()  # what the worker runs after a scoring run
        assert started == rule.approval_summary["wouldEnrol"], (rule, rule.approval_summary)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.claim_due_executions()
    total = sum(p["wouldEnrol"] for p in previews.values())
    assert by_rules.count() == total >= 1, previews
    at_risk_rules = by_rules.exclude(rule__kind="renewal_within")
    risks = Customer.objects.filter(pk__in=at_risk_rules.values("customer_id")).values_list("churn_risk", flat=True)
    assert min(risks) >= Decimal(str(risk_thresholds()[0]))  # the champion's medium band
    # No customer e-mail went out; each one a running execution reached waits for review.
    assert [to for to in recipients(smtp) if to in customer_addresses] == []
    assert not PlaybookStepRun.objects.filter(step_type="send_email", status="succeeded").exists()
    waiting = PlaybookStepRun.objects.filter(execution__in=by_rules, step_type="send_email", status="waiting")
    assert EmailReview.objects.filter(status="pending").count() == waiting.count()
    assert set(EmailReview.objects.values_list("execution_id", flat=True)) == set(
        waiting.values_list("execution_id", flat=True)
    )
    # Every task the playbooks created has a due date.
    tasks_created = Intervention.objects.filter(pk__in=by_rules.values("intervention_id"))
    assert not tasks_created.filter(due_date__isnull=True).exists()


# --- The API ------------------------------------------------------------------------------------


def test_the_review_queue_over_the_api(
    make_playbook, make_customer, csm, other_csm, smtp, api_for, django_capture_on_commit_callbacks,
    django_assert_max_num_queries,
):  # fmt: skip
    playbook = make_playbook(EMAIL_PLAYBOOK)
    mine = [make_customer(owner=csm) for _ in range(3)]
    theirs = make_customer(owner=other_csm)
    with django_capture_on_commit_callbacks(execute=True):
        start(playbook, *mine, theirs)
    client = api_for(csm)
    with django_assert_max_num_queries(6):
        listing = client.get("/api/playbook-email-reviews?status=pending")
    assert listing.status_code == 200
    assert sorted(item["customerId"] for item in listing.json()) == sorted(c.pk for c in mine)
    review = EmailReview.objects.get(customer=mine[0])
    bad = client.post(f"/api/playbook-email-reviews/{review.pk}/approve", {"subject": ""}, format="json")
    assert bad.status_code == 400 and "subject" in bad.json()["errors"]
    assert client.get("/api/playbook-email-reviews?status=nope").status_code == 400
    assert smtp.messages == []
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            f"/api/playbook-email-reviews/{review.pk}/approve", {"subject": "Checking in"}, format="json"
        )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["status"], body["subject"], body["isEdited"], body["decidedBy"]) == (
        "approved",
        "Checking in",
        True,
        csm.username,
    )
    assert recipients(smtp) == [mine[0].email] and smtp.messages[0]["Subject"] == "Checking in"
    other = EmailReview.objects.get(customer=theirs)
    assert client.post(f"/api/playbook-email-reviews/{other.pk}/discard", {}, format="json").status_code == 404
    discarded = client.post(
        f"/api/playbook-email-reviews/{EmailReview.objects.get(customer=mine[1]).pk}/discard", {}, format="json"
    )
    assert discarded.status_code == 200 and discarded.json()["status"] == "discarded"
    conflict = client.post(f"/api/playbook-email-reviews/{discarded.json()['id']}/approve", {}, format="json")
    assert conflict.status_code == 409
    assert len(smtp.messages) == 1
