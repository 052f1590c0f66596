"""Execution of each step type, branches, waits on a controlled clock (`elapse`), caps, exits, retries."""

import datetime as dt
import hashlib
import hmac
import json

import pytest
from django.core import mail

from alerts.models import Alert
from interventions.models import Intervention
from playbooks import engine, services
from playbooks.models import Playbook, PlaybookExecution, PlaybookStepRun
from playbooks.tests.conftest import elapse

pytestmark = pytest.mark.django_db


def start(playbook, customer, **kwargs):
    executions = services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="manual", **kwargs)
    assert len(executions) == 1
    return PlaybookExecution.objects.get(pk=executions[0].pk)


def drive_due():
    """What the beat task does: claim due executions and run each (eagerly here)."""
    token, ids = engine.claim_due()
    for pk in ids:
        engine.run_execution(execution_id=pk, token=token)
    return ids


def test_internal_steps_run_once_and_are_recorded(
    make_playbook, make_customer, csm, django_capture_on_commit_callbacks
):
    customer = make_customer(owner=csm, plan="Pro")
    playbook = make_playbook(
        [
            {"key": "task", "type": "create_intervention", "intervention_type": "Call", "priority": "high",
             "description": "Call {{ customer.company }}"},
            {"key": "tell", "type": "notify", "message": "Started for {{ customer.name }}", "severity": "low"},
            {"key": "alert", "type": "create_alert", "title": "T {{ customer.name }}", "message": "M"},
            {"key": "plan", "type": "update_customer", "fields": {"plan": "Enterprise"}},
        ]
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    execution.refresh_from_db()
    assert execution.status == "completed" and execution.completed_at is not None
    steps = execution.result["steps"]
    assert [s["key"] for s in steps] == ["task", "tell", "alert", "plan"]
    assert all(s["status"] == "succeeded" and s["durationMs"] is not None for s in steps)
    intervention = Intervention.objects.get(customer=customer)
    assert (intervention.type, intervention.priority, intervention.description) == (
        "Call",
        "high",
        f"Call {customer.company}",
    )
    assert intervention.assigned_csm == csm.get_full_name()
    assert Alert.objects.filter(customer=customer).count() == 2
    customer.refresh_from_db()
    assert customer.plan == "Enterprise"
    # Driving it again (a duplicate delivery) changes nothing.
    engine.run_execution(execution_id=execution.pk, token=execution.lease_token or "stale")
    assert Intervention.objects.filter(customer=customer).count() == 1
    assert PlaybookStepRun.objects.filter(execution=execution).count() == 4


def test_branches_follow_the_condition(make_playbook, make_customer, django_capture_on_commit_callbacks):
    steps = [
        {"key": "check", "type": "condition", "if": {"field": "health", "op": "lt", "value": 50},
         "then": "low", "else": "high"},
        {"key": "low", "type": "create_alert", "title": "low", "message": "x", "next": "end"},
        {"key": "high", "type": "create_alert", "title": "high", "message": "x"},
    ]  # fmt: skip
    playbook = make_playbook(steps)
    sick, well = make_customer(health_score=30), make_customer(health_score=90)
    with django_capture_on_commit_callbacks(execute=True):
        services.enrol(playbook=playbook, customer_ids=[sick.pk, well.pk], trigger="manual")
    assert list(Alert.objects.filter(customer=sick).values_list("title", flat=True)) == ["low"]
    assert list(Alert.objects.filter(customer=well).values_list("title", flat=True)) == ["high"]
    ran = PlaybookExecution.objects.get(customer=well).result["steps"]
    assert [s["key"] for s in ran] == ["check", "high"] and ran[0]["output"]["branch"] == "else"


def test_wait_is_stored_with_a_due_time_and_claimed_when_due(
    make_playbook, make_customer, django_capture_on_commit_callbacks
):
    playbook = make_playbook(
        [
            {"key": "wait", "type": "wait", "duration": "2d"},
            {"key": "after", "type": "create_alert", "title": "after", "message": "x"},
        ]
    )
    customer = make_customer()
    before = engine.db_now()
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    execution.refresh_from_db()
    run = PlaybookStepRun.objects.get(execution=execution, step_key="wait")
    assert execution.status == "running" and execution.lease_token == "" and run.status == "waiting"
    # The due time is the database's clock at the wait's start plus the duration.
    assert before <= run.started_at <= engine.db_now()
    assert execution.next_run_at == run.due_at == run.started_at + dt.timedelta(days=2)
    elapse(dt.timedelta(days=1, hours=23))
    assert drive_due() == []  # not yet
    elapse(dt.timedelta(hours=1, seconds=1))
    assert drive_due() == [execution.pk]
    assert drive_due() == []  # claimed once
    execution.refresh_from_db()
    assert execution.status == "completed"
    assert Alert.objects.filter(customer=customer, title="after").count() == 1
    wait = execution.result["steps"][0]
    assert wait["output"]["outcome"] == "elapsed" and 1.0 <= wait["output"]["lagSeconds"] < 5


def test_wait_until_a_condition_or_timeout(make_playbook, make_customer, django_capture_on_commit_callbacks):
    playbook = make_playbook(
        [
            {"key": "wait", "type": "wait", "until": {"field": "support_tickets", "op": "eq", "value": 0},
             "timeout": "3d", "check_every": "1d"},
            {"key": "after", "type": "create_alert", "title": "after", "message": "x"},
        ]
    )  # fmt: skip
    solved, stuck = make_customer(support_tickets=4), make_customer(support_tickets=4)
    with django_capture_on_commit_callbacks(execute=True):
        services.enrol(playbook=playbook, customer_ids=[solved.pk, stuck.pk], trigger="manual")
    solved.support_tickets = 0
    solved.save()
    elapse(dt.timedelta(days=1, seconds=1))
    assert len(drive_due()) == 2
    first = PlaybookExecution.objects.get(customer=solved)
    assert first.status == "completed" and first.result["steps"][0]["output"]["outcome"] == "condition_met"
    second = PlaybookExecution.objects.get(customer=stuck)
    assert second.status == "running"
    elapse(dt.timedelta(days=1, seconds=1))  # day 2: still stuck, checked again a day later
    assert drive_due() == [second.pk]
    second.refresh_from_db()
    assert second.status == "running" and second.next_run_at == second.step_runs.get().due_at
    elapse(dt.timedelta(days=1, seconds=1))  # day 3: past the timeout
    assert drive_due() == [second.pk]
    second.refresh_from_db()
    assert second.status == "completed" and second.result["steps"][0]["output"]["outcome"] == "timed_out"


def test_exit_condition_stops_the_execution(make_playbook, make_customer, django_capture_on_commit_callbacks):
    playbook = make_playbook(
        [
            {"key": "wait", "type": "wait", "duration": "1d"},
            {"key": "after", "type": "create_alert", "title": "after", "message": "x"},
        ],
        exit_conditions=[{"field": "risk", "op": "lt", "value": 0.5}],
    )
    customer = make_customer(churn_risk="0.9000")
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    customer.churn_risk = "0.3000"
    customer.save()
    elapse(dt.timedelta(days=1, seconds=1))
    assert drive_due() == [execution.pk]
    execution.refresh_from_db()
    assert execution.status == "completed" and "exit condition" in execution.result["exited"]
    assert not Alert.objects.filter(customer=customer, title="after").exists()


def test_enrolment_cap_and_one_running(make_playbook, make_customer):
    playbook = make_playbook([{"key": "wait", "type": "wait", "duration": "1d"}], reenrol_days=30)
    customer = make_customer()
    t0 = engine.db_now()
    assert len(services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="rule", now=t0)) == 1
    # Running: never a second one.
    assert services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="rule", now=t0) == []
    PlaybookExecution.objects.update(status="completed", completed_at=t0)
    # Finished but within the cap: not again.
    later = t0 + dt.timedelta(days=29)
    assert services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="rule", now=later) == []
    # A manual trigger ignores the cap (and restarts it); after the cap a rule enrols again.
    assert (
        len(
            services.enrol(
                playbook=playbook, customer_ids=[customer.pk], trigger="manual", now=later, respect_cap=False
            )
        )
        == 1
    )
    PlaybookExecution.objects.update(status="completed", completed_at=later)
    assert (
        len(
            services.enrol(
                playbook=playbook, customer_ids=[customer.pk], trigger="rule", now=later + dt.timedelta(days=31)
            )
        )
        == 1
    )


def test_send_email_through_django_mail(make_playbook, make_customer, csm, django_capture_on_commit_callbacks):
    playbook = make_playbook(
        [{"key": "mail", "type": "send_email", "to": "customer", "subject": "Hi {{ customer.name }}",
          "body": "Your plan: {{ customer.plan }}"}]
    )  # fmt: skip
    # A customer e-mail goes out without review only from a playbook a manager set to auto-send.
    Playbook.objects.filter(pk=playbook.pk).update(auto_send_customer_emails=True)
    playbook.refresh_from_db()
    customer = make_customer(owner=csm, plan="Gold")
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [customer.email] and message.subject == f"Hi {customer.name}"
    assert message.body == "Your plan: Gold"
    assert message.extra_headers["X-Idempotency-Key"] == f"playbook-{execution.pk}-mail"
    execution.refresh_from_db()
    assert execution.status == "completed" and execution.result["steps"][0]["attempts"] == 1


def test_webhook_is_signed_and_carries_an_idempotency_key(
    make_playbook, make_customer, receiver, settings, django_capture_on_commit_callbacks
):
    settings.PLAYBOOK_WEBHOOK_SECRET = "whsec-test"
    playbook = make_playbook([{"key": "hook", "type": "webhook", "url": receiver.url, "payload": {"x": 1}}])
    customer = make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    assert len(receiver.deliveries) == 1
    delivery = receiver.deliveries[0]
    headers = {k.lower(): v for k, v in delivery["headers"].items()}
    expected = hmac.new(
        b"whsec-test", headers["x-churnshield-timestamp"].encode() + b"." + delivery["body"], hashlib.sha256
    ).hexdigest()
    assert headers["x-churnshield-signature"] == f"v1={expected}"
    assert headers["idempotency-key"] == f"playbook-{execution.pk}-hook"
    body = json.loads(delivery["body"])
    assert body["customer"]["id"] == customer.pk and body["payload"] == {"x": 1}
    execution.refresh_from_db()
    assert execution.status == "completed"


def test_webhook_retries_transient_errors_with_backoff_then_fails_with_an_alert(
    make_playbook, make_customer, receiver, settings, django_capture_on_commit_callbacks
):
    settings.PLAYBOOK_MAX_ATTEMPTS = 3
    settings.PLAYBOOK_RETRY_BASE_SECONDS = 10
    receiver.statuses = [503, 500, 502]
    playbook = make_playbook([{"key": "hook", "type": "webhook", "url": receiver.url}])
    customer = make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    execution.refresh_from_db()
    assert execution.status == "running"
    first_delay = (execution.next_run_at - execution.step_runs.get().started_at).total_seconds()
    assert 5 <= first_delay <= 11  # the call, then a backoff in [base/2, base]
    elapse(dt.timedelta(seconds=11))
    assert drive_due() == [execution.pk]
    execution.refresh_from_db()
    assert 9.5 <= (execution.next_run_at - engine.db_now()).total_seconds() <= 20  # backoff grew
    elapse(dt.timedelta(seconds=29))
    assert drive_due() == [execution.pk]
    execution.refresh_from_db()
    assert execution.status == "failed" and "HTTP 502" in execution.error and "3 attempts" in execution.error
    assert len(receiver.deliveries) == 3
    assert len({d["headers"]["Idempotency-Key"] for d in receiver.deliveries}) == 1
    assert Alert.objects.filter(customer=customer, title__startswith="Playbook failed").count() == 1


def test_webhook_permanent_error_fails_at_once(
    make_playbook, make_customer, receiver, django_capture_on_commit_callbacks
):
    receiver.statuses = [400]
    playbook = make_playbook([{"key": "hook", "type": "webhook", "url": receiver.url}])
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, make_customer())
    execution.refresh_from_db()
    assert execution.status == "failed" and execution.error == "webhook: HTTP 400"
    assert execution.result["steps"][0]["status"] == "failed"


def test_cancel_and_retry(make_playbook, make_customer, csm, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [400]
    playbook = make_playbook(
        [{"key": "hook", "type": "webhook", "url": receiver.url},
         {"key": "after", "type": "create_alert", "title": "after", "message": "x"}]
    )  # fmt: skip
    customer = make_customer(owner=csm)
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    execution.refresh_from_db()
    assert execution.status == "failed"
    with django_capture_on_commit_callbacks(execute=True):
        services.execution_retry(user=csm, execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == "completed" and len(receiver.deliveries) == 2
    assert Alert.objects.filter(customer=customer, title="after").count() == 1
    waiting = make_playbook([{"key": "wait", "type": "wait", "duration": "1d"}])
    with django_capture_on_commit_callbacks(execute=True):
        parked = start(waiting, customer)
    services.execution_cancel(user=csm, execution_id=parked.pk, reason="customer renewed")
    parked.refresh_from_db()
    assert parked.status == "cancelled" and parked.next_run_at is None
    elapse(dt.timedelta(days=2))
    assert drive_due() == []


def test_holdout_is_random_and_recorded(make_playbook, make_customer):
    playbook = make_playbook([{"key": "a", "type": "create_alert", "title": "t", "message": "m"}], holdout_share=0.5)
    customers = [make_customer() for _ in range(200)]
    executions = services.enrol(playbook=playbook, customer_ids=[c.pk for c in customers], trigger="rule")
    held = [e for e in executions if e.is_holdout]
    # Binomial(200, 0.5): 70..130 holds with probability > 0.9999.
    assert 70 <= len(held) <= 130
    assert all(e.status == "completed" and e.result["holdout"] for e in held)
    assert not Alert.objects.filter(customer_id__in=[e.customer_id for e in held]).exists()
    # Two draws of the same population differ (it is random, not a fixed split).
    again = make_playbook([{"key": "a", "type": "create_alert", "title": "t", "message": "m"}], holdout_share=0.5)
    second = {
        e.customer_id
        for e in services.enrol(playbook=again, customer_ids=[c.pk for c in customers], trigger="rule")
        if e.is_holdout
    }
    assert second != {e.customer_id for e in held}


def test_assignee_rules_and_a_branch_on_the_interventions_outcome(
    make_playbook, make_customer, make_user, django_capture_on_commit_callbacks
):
    busy, idle = make_user("csm"), make_user("csm")
    for _ in range(2):  # two open interventions on `busy`, none on `idle`
        Intervention.objects.create(
            customer=make_customer(), type="x", status="active", assigned_csm=busy.get_full_name()
        )
    playbook = make_playbook(
        [
            {"key": "least", "type": "create_intervention", "intervention_type": "Call", "assignee": "least_loaded"},
            {"key": "named", "type": "create_intervention", "intervention_type": "QBR", "assignee": "named",
             "assignee_name": "Dana Example"},
            # Branches on the execution's intervention (the first one it created): open, then an outcome.
            {"key": "check", "type": "condition", "if": {"field": "intervention_outcome", "op": "eq",
             "value": "open"}, "then": "still_open", "else": "other"},
            {"key": "still_open", "type": "create_alert", "title": "open", "message": "m", "next": "end"},
            {"key": "other", "type": "create_alert", "title": "other", "message": "m"},
        ]
    )  # fmt: skip
    customer = make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        execution = start(playbook, customer)
    execution.refresh_from_db()
    assert execution.status == "completed"
    assigned = dict(Intervention.objects.filter(customer=customer).values_list("type", "assigned_csm"))
    assert assigned == {"Call": idle.get_full_name(), "QBR": "Dana Example"}
    assert execution.intervention.type == "Call"
    assert list(Alert.objects.filter(customer=customer).values_list("title", flat=True)) == ["open"]
    # The same playbook once the intervention has an outcome takes the other branch.
    Intervention.objects.filter(customer=customer, type="Call").update(status="completed", outcome="succeeded")
    later = make_playbook(playbook.steps[2:])
    with django_capture_on_commit_callbacks(execute=True):
        second = services.enrol(
            playbook=later, customer_ids=[customer.pk], trigger="manual",
            interventions={customer.pk: execution.intervention},
        )[0]  # fmt: skip
    second.refresh_from_db()
    assert second.result["steps"][0]["output"] == {"result": False, "branch": "else"}
    assert Alert.objects.filter(customer=customer, title="other").count() == 1


def test_notify_reaches_only_the_channel_the_step_names(
    make_playbook, make_customer, csm, django_capture_on_commit_callbacks
):
    from alerts.models import NotificationDelivery, NotificationPreference

    NotificationPreference.objects.update_or_create(
        user=csm,
        defaults={
            "email_enabled": True,
            "slack_webhook_url": "https://hooks.slack.com/services/T0/B0/x",
            "teams_webhook_url": "https://example.webhook.office.com/webhookb2/x",
            "min_severity": "low",
        },
    )
    customers = {channel: make_customer(owner=csm) for channel in ("slack", "teams", "in_app")}
    for channel, customer in customers.items():
        playbook = make_playbook([{"key": "tell", "type": "notify", "message": "Hi", "channel": channel}])
        with django_capture_on_commit_callbacks(execute=True):
            execution = start(playbook, customer)
        execution.refresh_from_db()
        assert execution.result["steps"][0]["output"]["channel"] == channel
    sent = {
        customer_id: sorted(
            NotificationDelivery.objects.filter(alerts__customer_id=customer_id).values_list("channel", flat=True)
        )
        for customer_id in (c.pk for c in customers.values())
    }
    assert sent == {customers["slack"].pk: ["slack"], customers["teams"].pk: ["teams"], customers["in_app"].pk: []}
    # An ordinary alert for the same user still goes to every channel the user chose.
    other = make_customer(owner=csm)
    with django_capture_on_commit_callbacks(execute=True):
        from alerts.services import alert_create

        alert_create(title="Risk rose", message="x", severity="high", customer_id=other.pk)
    channels = NotificationDelivery.objects.filter(alerts__customer_id=other.pk).values_list("channel", flat=True)
    assert sorted(channels) == ["email", "slack", "teams"]
    assert Alert.objects.filter(customer__in=customers.values()).count() == 3
