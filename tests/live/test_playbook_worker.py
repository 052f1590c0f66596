"""Durable playbook execution with real processes: a SIGKILLed worker, and concurrent claimers."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from django.db import connection, connections

from alerts.models import Alert
from churnshield.celery import app
from interventions.models import Intervention
from playbooks import engine, services
from playbooks.models import PlaybookExecution, PlaybookStepRun
from playbooks.tests.conftest import Receiver
from tests.live.conftest import ROOT, VENV_BIN, eventually, service_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def make_playbook(settings):
    from playbooks.services import playbook_upsert

    settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK = True
    return lambda steps: playbook_upsert(name="Live playbook", data={"steps": steps})[0]


def _worker(start_process, redis_url: str, name: str):
    env = service_env(
        REDIS_URL=redis_url,
        CELERY_TASK_ALWAYS_EAGER="false",
        PLAYBOOK_LEASE_SECONDS="3",
        PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK="true",  # the receiver listens on loopback (settings only reach this process)
    )
    return start_process(
        [str(VENV_BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "--loglevel", "INFO",
         "-n", f"{name}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        env,
        name,
    )  # fmt: skip


def test_sigkilled_worker_resumes_and_each_db_effect_happens_once(
    start_process, redis_url, make_playbook, make_customer, settings
):
    settings.PLAYBOOK_LEASE_SECONDS = 3
    receiver = Receiver()
    receiver.block.clear()  # the first delivery hangs: the worker is inside the send window
    try:
        playbook = make_playbook(
            [
                {"key": "task", "type": "create_intervention", "intervention_type": "Call"},
                {"key": "hook", "type": "webhook", "url": receiver.url, "timeout": 30},
                {"key": "alert", "type": "create_alert", "title": "after hook", "message": "m"},
            ]
        )
        customer = make_customer()
        app.conf.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False)
        worker = _worker(start_process, redis_url, "pb-worker-1")
        execution = services.enrol(playbook=playbook, customer_ids=[customer.pk], trigger="manual")[0]
        assert receiver.entered.wait(60), "the worker never reached the webhook step"
        # Killed mid-execution: the intervention step has committed, the webhook call is in flight.
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert Intervention.objects.filter(customer=customer).count() == 1
        assert PlaybookStepRun.objects.get(execution=execution, step_key="hook").status == "sending"
        receiver.block.set()
        _worker(start_process, redis_url, "pb-worker-2")

        def resumed() -> bool:
            engine_token, ids = engine.claim_due()  # the beat task's claim, after the lease ran out
            from playbooks.tasks import run_playbook_execution

            for pk in ids:
                run_playbook_execution.delay(pk, engine_token)
            return PlaybookExecution.objects.get(pk=execution.pk).status == "completed"

        eventually(resumed, timeout=60, interval=0.5)
        execution.refresh_from_db()
        assert Intervention.objects.filter(customer=customer).count() == 1
        assert Alert.objects.filter(customer=customer, title="after hook").count() == 1
        assert PlaybookStepRun.objects.filter(execution=execution).count() == 3
        hook = PlaybookStepRun.objects.get(execution=execution, step_key="hook")
        assert hook.attempts == 2 and hook.output["resentAfterCrash"] == 1
        # The outside service saw the same idempotency key twice (it can dedupe): at most one duplicate.
        keys = [d["headers"]["Idempotency-Key"] for d in receiver.deliveries]
        assert keys == [f"playbook-{execution.pk}-hook"] * 2
    finally:
        app.conf.update(task_always_eager=True)
        receiver.close()


def test_a_due_wait_claimed_by_two_concurrent_claimers_runs_once(make_playbook, make_customer):
    if connection.vendor != "postgresql":
        pytest.skip("row locks (SKIP LOCKED) need PostgreSQL; SQLite serialises writers instead")
    playbook = make_playbook(
        [
            {"key": "wait", "type": "wait", "duration": "1s"},
            {"key": "alert", "type": "create_alert", "title": "after wait", "message": "m"},
        ]
    )
    customers = [make_customer() for _ in range(60)]
    services.enrol(playbook=playbook, customer_ids=[c.pk for c in customers], trigger="rule")  # runs to the wait
    assert PlaybookStepRun.objects.filter(status="waiting").count() == 60
    time.sleep(1.2)  # every wait is now due
    claimed: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def claimer(slot: int) -> None:
        try:
            barrier.wait()
            for _ in range(20):
                token, ids = engine.claim_due(limit=7)
                claimed[slot].extend(ids)
                for pk in ids:
                    engine.run_execution(execution_id=pk, token=token)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert set(claimed[0]).isdisjoint(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 60 and claimed[0] and claimed[1]
    assert Alert.objects.filter(title="after wait").count() == 60
    assert set(PlaybookExecution.objects.values_list("status", flat=True)) == {"completed"}


CLAIMER = """
import json, time
from django.db import connection
from playbooks import engine
while time.time() < {start}:  # both processes start claiming at the same moment
    time.sleep(0.01)
claimed = []
for _ in range(40):
    token, ids = engine.claim_due(limit=3)
    claimed.extend(ids)
    for pk in ids:
        engine.run_execution(execution_id=pk, token=token)
    if not ids:
        time.sleep(0.05)
print("CLAIMED", json.dumps(claimed))
"""


def test_a_due_wait_claimed_by_two_claimer_processes_runs_once(make_playbook, make_customer):
    """The same race between two separate processes (what two beat-fired claims on two workers are):
    SKIP LOCKED hands each due execution to exactly one of them."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks (SKIP LOCKED) need PostgreSQL; SQLite serialises writers instead")
    playbook = make_playbook(
        [
            {"key": "wait", "type": "wait", "duration": "1s"},
            {"key": "alert", "type": "create_alert", "title": "after wait", "message": "m"},
        ]
    )
    customers = [make_customer() for _ in range(40)]
    services.enrol(playbook=playbook, customer_ids=[c.pk for c in customers], trigger="rule")
    assert PlaybookStepRun.objects.filter(status="waiting").count() == 40
    env = {key: value for key, value in service_env().items() if key != "REDIS_URL"}
    code = CLAIMER.format(start=time.time() + 8)
    command = [str(VENV_BIN / "python"), "manage.py", "shell", "-v", "0", "-c", code]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    processes = [subprocess.Popen(command, cwd=ROOT, env=env, **pipes) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    claimed = [json.loads(out.split("CLAIMED", 1)[1]) for out, err in outputs]
    assert set(claimed[0]).isdisjoint(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 40 and claimed[0] and claimed[1]
    assert Alert.objects.filter(title="after wait").count() == 40
    assert set(PlaybookExecution.objects.values_list("status", flat=True)) == {"completed"}
