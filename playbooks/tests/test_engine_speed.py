"""The per-step path stays lean: query counts per transaction, chunked dispatch, the careful pass."""

import datetime as dt
import time

import pytest
from celery.signals import task_prerun

from alerts.models import Alert
from interventions.models import Intervention
from playbooks import engine, services, tasks
from playbooks.models import PlaybookExecution, PlaybookStepRun
from playbooks.tests.conftest import elapse

pytestmark = pytest.mark.django_db

BENCH_STEPS = [
    {"key": "task", "type": "create_intervention", "intervention_type": "Bench call", "priority": "low"},
    {"key": "wait", "type": "wait", "duration": "2s"},
    {"key": "check", "type": "condition", "if": {"field": "health", "op": "lt", "value": 101}, "then": "alert"},
    {
        "key": "alert",
        "type": "create_alert",
        "title": "Bench {{ customer.name }}",
        "message": "done",
        "severity": "low",
    },
]


def test_queries_per_step_of_the_bench_playbook(make_playbook, make_customer, csm, django_assert_max_num_queries):
    playbook = make_playbook(BENCH_STEPS)
    customer = make_customer(owner=csm)
    execution = services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="bulk")[0]
    # Until the wait: lock + load (execution, playbook, customer, owner, intervention in one SELECT;
    # a fresh execution has no step runs to load), the intervention, both step records in one
    # INSERT, the cursor = 4, plus the transaction's SAVEPOINT/RELEASE (BEGIN/COMMIT in production).
    with django_assert_max_num_queries(4 + 2):
        assert engine.run_execution(execution_id=execution.pk, token=execution.lease_token) == "running"
    assert PlaybookStepRun.objects.get(execution=execution, step_key="wait").status == "waiting"
    elapse(dt.timedelta(seconds=3))
    token, ids = engine.claim_due()
    assert ids == [execution.pk]
    # After the wait: lock + load, step runs, the wait's record, the alert (its snooze check and
    # insert inside alerts' own savepoint), condition + alert records in one INSERT, the cursor = 9,
    # plus the transaction's SAVEPOINT/RELEASE, plus the champion's risk bands for the condition
    # (read once, then kept 30 s by the process).
    with django_assert_max_num_queries(9 + 2 + 1):
        assert engine.run_execution(execution_id=execution.pk, token=token) == "completed"
    runs = dict(PlaybookStepRun.objects.filter(execution=execution).values_list("step_key", "status"))
    assert runs == {"task": "succeeded", "wait": "succeeded", "check": "succeeded", "alert": "succeeded"}
    assert Intervention.objects.filter(customer=customer).count() == 1
    assert Alert.objects.filter(customer=customer, title=f"Bench {customer.name}", owner=csm).count() == 1
    # Run again with the same (now stale) token: nothing more happens.
    assert engine.run_execution(execution_id=execution.pk, token=token) == ""
    assert Alert.objects.filter(customer=customer).count() == 1


def test_a_failing_step_rolls_back_the_fast_pass_and_is_recorded_by_the_careful_one(
    make_playbook, make_customer, django_capture_on_commit_callbacks
):
    playbook = make_playbook(
        [
            {"key": "task", "type": "create_intervention", "intervention_type": "Call"},
            {"key": "alert", "type": "create_alert", "title": "before", "message": "m"},
            {"key": "owner", "type": "update_customer", "fields": {"owner": "nobody-by-that-name"}},
        ]
    )
    customer = make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        execution = services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="manual")[0]
    execution.refresh_from_db()
    assert execution.status == "failed" and "nobody-by-that-name" in execution.error
    runs = dict(PlaybookStepRun.objects.filter(execution=execution).values_list("step_key", "status"))
    assert runs == {"task": "succeeded", "alert": "succeeded", "owner": "failed"}
    # The fast pass's effects were rolled back: each effect exists once, from the careful pass.
    assert Intervention.objects.filter(customer=customer).count() == 1
    assert Alert.objects.filter(customer=customer, title="before").count() == 1
    assert [s["key"] for s in execution.result["steps"]] == ["task", "alert", "owner"]


@pytest.mark.django_db(transaction=True)  # real commits: after-commit hooks fire as in a worker
def test_enrolment_dispatches_one_task_per_chunk_and_one_alert_fan_out_per_chunk(
    make_playbook, make_customer, settings
):
    settings.PLAYBOOK_DISPATCH_CHUNK = 3
    assert services.chunks([1, 2, 3, 4, 5, 6, 7], 3) == [[1, 2, 3], [4, 5, 6], [7]]
    playbook = make_playbook([{"key": "alert", "type": "create_alert", "title": "hi", "message": "m"}])
    customers = [make_customer() for _ in range(7)]
    ran, fan_outs = [], []

    def record(sender=None, args=None, **_):
        if getattr(sender, "name", "") == tasks.run_playbook_executions.name:
            ran.append(list(args[0]))
        if getattr(sender, "name", "") == "alerts.tasks.fan_out_alerts":
            fan_outs.append(list(args[0]))

    task_prerun.connect(record, weak=False)
    try:
        services.enrol(playbook=playbook, customer_ids=[c.pk for c in customers], trigger="bulk")
    finally:
        task_prerun.disconnect(record)
    assert [len(ids) for ids in ran] == [3, 3, 1]
    assert sorted(pk for ids in ran for pk in ids) == sorted(
        PlaybookExecution.objects.filter(playbook=playbook).values_list("pk", flat=True)
    )
    assert PlaybookExecution.objects.filter(playbook=playbook, status="completed").count() == 7
    assert Alert.objects.filter(title="hi").count() == 7
    # One notification fan-out per chunk (after its last commit), covering every alert of the chunk.
    assert [len(ids) for ids in fan_outs] == [3, 3, 1]
    assert sorted(pk for ids in fan_outs for pk in ids) == sorted(Alert.objects.values_list("pk", flat=True))


def test_a_queued_execution_keeps_its_queued_lease_until_a_worker_takes_it(make_playbook, make_customer, settings):
    """A backlog in the broker must not expire there: the claimer would hand it out again, most
    overdue first, ahead of the due waits (what made the lag explode when enrolment outran workers)."""
    settings.PLAYBOOK_LEASE_SECONDS, settings.PLAYBOOK_QUEUED_LEASE_SECONDS = 60, 900
    playbook = make_playbook(BENCH_STEPS)
    # Enrolled, its message "in the broker" (the on-commit enqueue is not run here).
    execution = services.enrol(playbook=playbook, customer_ids=[make_customer().pk], trigger="bulk")[0]
    execution.refresh_from_db()
    assert execution.next_run_at == execution.started_at + dt.timedelta(seconds=900)
    elapse(dt.timedelta(seconds=61))  # past a worker's lease: still only queued, not claimed again
    assert engine.claim_due()[1] == []
    # A worker takes it: from then on a worker's lease (a killed worker is noticed after 60 s).
    assert engine.hold(execution_ids=[execution.pk], token=execution.lease_token) == 1
    execution.refresh_from_db()
    assert 59 <= (execution.next_run_at - engine.db_now()).total_seconds() <= 60
    elapse(dt.timedelta(seconds=61))
    token, ids = engine.claim_due()
    assert ids == [execution.pk]
    execution.refresh_from_db()  # handed out again: a queued lease once more, with a new token
    assert execution.lease_token == token and (execution.next_run_at - engine.db_now()).total_seconds() > 800
    # A lost message is recovered after the queued lease.
    elapse(dt.timedelta(seconds=901))
    assert engine.claim_due()[1] == [execution.pk]


def test_the_claimer_follows_due_times_between_beat_ticks(make_playbook, make_customer, settings):
    """One beat tick: nothing is due yet, so the claimer sleeps until the wait falls due (by the
    database's clock) and claims it then, instead of leaving it to the next tick."""
    settings.PLAYBOOK_CLAIM_FOLLOW_SECONDS = 5
    playbook = make_playbook(
        [
            {"key": "wait", "type": "wait", "duration": "1s"},
            {"key": "after", "type": "create_alert", "title": "after", "message": "m"},
        ]
    )
    customer = make_customer()
    execution = services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="bulk")[0]
    engine.run_execution(execution_id=execution.pk, token=execution.lease_token)
    started = time.monotonic()
    assert tasks.claim_due_executions() == 1  # eager: the claimed chunk runs inline
    took = time.monotonic() - started
    execution.refresh_from_db()
    wait = execution.result["steps"][0]
    assert execution.status == "completed" and wait["output"]["outcome"] == "elapsed"
    assert 0 <= wait["output"]["lagSeconds"] < 0.5
    # It left as soon as nothing more was due within its window (not after the full 5 s).
    assert took < 3
    settings.PLAYBOOK_CLAIM_FOLLOW_SECONDS = 0  # a plain tick: claims what is due and leaves
    started = time.monotonic()
    assert tasks.claim_due_executions() == 0 and time.monotonic() - started < 1
