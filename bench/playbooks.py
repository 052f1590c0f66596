"""Playbook throughput and wait lag through a real Celery worker, celery beat and the claimer.

10,000 executions of a 4-step playbook (create an intervention, wait 2 s, branch, raise an alert)
on PostgreSQL + Redis. Enrolment is bulk (1,000 customers per statement) and hands executions to
the worker in chunks (one task per `PLAYBOOK_DISPATCH_CHUNK` executions) on the default queue; beat
fires the claimer every second on its own queue; the claimer follows due times until the next tick
(`PLAYBOOK_CLAIM_FOLLOW_SECONDS`=0.9), drives what falls due a few at a time itself and hands larger
batches, in chunks, to the `playbooks-due` queue. One worker process serves only the claim and due queues (a claim never
waits behind a fresh chunk); the pool takes due work before fresh work (kombu's
`queue_order_strategy=priority`), so a backlog of fresh executions never delays a due wait by more
than the chunk a process is busy with.

Reports steps per second (all 40,000 steps, first enrolment to last completion) and the lag
between each wait's due time and the moment it ran (median, p99), each with its target and whether
it was met (>= 200 steps/s; p99 lag <= 2 s beyond the claim interval), and the load average.

    make bench-playbooks   (BENCH_PLAYBOOKS_DATABASE_URL, BENCH_REDIS_URL, BENCH_EXECUTIONS,
    BENCH_CONCURRENCY, PLAYBOOK_DISPATCH_CHUNK, PLAYBOOK_DUE_DISPATCH_CHUNK,
    PLAYBOOK_CLAIM_FOLLOW_SECONDS to override)
"""

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
DB_URL = os.environ.get(
    "BENCH_PLAYBOOKS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_bench_playbooks"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
EXECUTIONS = int(os.environ.get("BENCH_EXECUTIONS", "10000"))
CLAIM_INTERVAL = 1
WAIT_SECONDS = 2
ENV = {
    **os.environ,
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "PLAYBOOK_DUE_QUEUE": "playbooks-due",
    # The claimer follows due times between its 1 s ticks (kept below the interval, as documented).
    "PLAYBOOK_CLAIM_FOLLOW_SECONDS": os.environ.get("PLAYBOOK_CLAIM_FOLLOW_SECONDS", "0.9"),
    "PLAYBOOK_DISPATCH_CHUNK": os.environ.get("PLAYBOOK_DISPATCH_CHUNK", "10"),
    "PLAYBOOK_DUE_DISPATCH_CHUNK": os.environ.get("PLAYBOOK_DUE_DISPATCH_CHUNK", "5"),
}
CONCURRENCY = os.environ.get("BENCH_CONCURRENCY", "3")
STEPS = [
    {"key": "task", "type": "create_intervention", "intervention_type": "Bench call", "priority": "low"},
    {"key": "wait", "type": "wait", "duration": f"{WAIT_SECONDS}s"},
    {"key": "check", "type": "condition", "if": {"field": "health", "op": "lt", "value": 101}, "then": "alert"},
    {
        "key": "alert",
        "type": "create_alert",
        "title": "Bench {{ customer.name }}",
        "message": "done",
        "severity": "low",
    },
]


def psql(sql: str, db: str = "postgres") -> str:
    url = DB_URL.rsplit("/", 1)[0] + "/" + db
    return subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True, check=True).stdout.strip()


def prepare() -> None:
    name = DB_URL.rsplit("/", 1)[1]
    psql(f"DROP DATABASE IF EXISTS {name}")
    psql(f"CREATE DATABASE {name}")
    subprocess.run([str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=ENV, check=True)
    subprocess.run(["redis-cli", "-u", REDIS_URL, "FLUSHDB"], capture_output=True, check=False)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    # SIGTERM (e.g. a CI timeout) stops the workers too: turn it into SystemExit so `finally` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    prepare()
    os.environ.update(ENV)
    import django

    django.setup()
    from django.utils import timezone
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from customers.models import Customer
    from playbooks import services
    from playbooks.models import PlaybookExecution, PlaybookStepRun

    now = timezone.now()
    Customer.objects.bulk_create(
        [Customer(name=f"Bench {n}", email=f"bench{n}@example.com", signup_date=now) for n in range(EXECUTIONS)],
        batch_size=5000,
    )
    playbook, _ = services.playbook_upsert(name="Bench playbook", data={"steps": STEPS, "reenrol_days": 0})
    every, _ = IntervalSchedule.objects.get_or_create(every=CLAIM_INTERVAL, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="bench-claim", task="playbooks.tasks.claim_due_executions", interval=every, queue="playbooks-claim"
    )
    logs = ROOT / ".bench-logs"
    logs.mkdir(exist_ok=True)
    celery = [str(BIN / "celery"), "-A", "churnshield"]
    quiet = ["--loglevel", "WARNING"]
    workers = ["--without-heartbeat", "--without-gossip", "--without-mingle"]

    def spawn(args: list[str], log: str) -> subprocess.Popen:
        with open(logs / log, "wb") as handle:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                [*celery, *args, *quiet], cwd=ROOT, env=ENV, stdout=handle, stderr=subprocess.STDOUT
            )

    processes = [
        # One process for the claim and due waits only (it never waits behind a fresh chunk), and a
        # pool that takes its queues in priority order: due waits first, then fresh executions.
        spawn(["worker", "-Q", "playbooks-claim,playbooks-due", "-c", "1", "-n", "due@%h", *workers], "due.log"),
        spawn(
            ["worker", "-Q", "playbooks-due,celery", "-c", CONCURRENCY, "-n", "pb@%h", *workers],
            "worker.log",
        ),
        spawn(["beat", "-s", str(logs / "beat.db")], "beat.log"),
    ]
    try:
        time.sleep(6)  # workers and beat up
        from churnshield.celery import app

        app.conf.update(broker_url=REDIS_URL, task_always_eager=False)
        ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
        started = time.perf_counter()
        for offset in range(0, len(ids), 1000):
            services.enrol(playbook=playbook, customer_ids=ids[offset : offset + 1000], trigger="bulk")
        enrolled = time.perf_counter() - started
        print(f"enrolled {len(ids):,} executions in {enrolled:.1f} s", flush=True)
        deadline = time.monotonic() + 1800
        while True:
            done = PlaybookExecution.objects.filter(playbook=playbook, status="completed").count()
            if done >= EXECUTIONS or time.monotonic() > deadline:
                break
            time.sleep(1)
        elapsed = time.perf_counter() - started
        steps = PlaybookStepRun.objects.filter(execution__playbook=playbook, status="succeeded").count()
        lags = sorted(
            float(output["lagSeconds"])
            for output in PlaybookStepRun.objects.filter(step_key="wait", status="succeeded").values_list(
                "output", flat=True
            )
        )
        failed = PlaybookExecution.objects.filter(playbook=playbook).exclude(status="completed").count()
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan")
        rate = steps / elapsed
        lag_target = CLAIM_INTERVAL + 2
        print(f"executions completed: {done:,} of {EXECUTIONS:,} (not completed: {failed})")
        print(f"steps: {steps:,} in {elapsed:.1f} s = {rate:.0f} steps/s (target >= 200: {verdict(rate >= 200)})")
        print(
            f"wait lag (due -> ran): median {statistics.median(lags):.2f} s, p99 {p99:.2f} s, max {lags[-1]:.2f} s "
            f"(claim interval {CLAIM_INTERVAL} s; target p99 <= {lag_target} s: {verdict(p99 <= lag_target)})"
        )
        print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
