"""Benchmark: server-side render time of the admin workspace pages on a 100,000-customer book.

Every page a CSM or a manager opens in the admin, as each of them: the home (cockpit), the
Customer 360, Reports, the renewals list and forecast, the customer list, the alerts list,
Interventions → Analytics and the champion's model card. Rendered in-process by Django's test
Client (middleware, session, auth, ORM, templates; no network), against a baseline measured in
the same run: the stock admin changelist of a small model (auth groups), i.e. what any admin page
costs before it shows data. Requests are interleaved page by page, so drift on a shared machine
hits every page alike.

    make bench-admin                         # 100,000 customers in PostgreSQL (seeded once, reused)
    BENCH_CUSTOMERS=20000 make bench-admin   # smaller book
    BENCH_PROFILE=1 make bench-admin         # also list each page's queries by time, EXPLAIN the slowest
    BENCH_PAGES="analytics,Reports" make bench-admin   # only the pages whose label has one of these

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/churnshield_bench,
the book `make bench` uses). The first run on a book counts the portfolio snapshot as the batch
would; with `BENCH_TRAIN=1` it also trains a champion for the model card (left out without one). Prints
median and p95 per page, the ratio to the baseline and the target: a median <= 200 ms for every
page (<= 150 ms for the home and the 360, the tighter target they already met).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BenchDatabase

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churnshield_bench")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "30"))
WARM = int(os.environ.get("BENCH_WARM", "5"))
PROFILE = bool(os.environ.get("BENCH_PROFILE"))
TRAIN = bool(os.environ.get("BENCH_TRAIN"))
# Comma-separated parts of page labels: measure only those pages (and the baseline).
ONLY = [part.strip() for part in os.environ.get("BENCH_PAGES", "").split(",") if part.strip()]
TARGET_MS = 200.0
# The home and the 360 already met a tighter target; kept so that they do not slip back.
TIGHTER_TARGET_MS = {"admin home, CSM": 150.0, "admin home, manager": 150.0, "Customer 360, CSM": 150.0}
DB = BenchDatabase(DATABASE_URL, CUSTOMERS, activity_scale=0.02)


def setup_django() -> None:
    os.environ.update({"DATABASE_URL": DATABASE_URL, "DJANGO_SETTINGS_MODULE": "bench.settings", "REDIS_URL": ""})
    import django

    django.setup()


def train_a_champion_once() -> None:
    """The model card shows the champion; a freshly seeded book has none. `BENCH_TRAIN=1` trains
    one (once; many minutes at 100,000 customers on a loaded machine); without a champion the
    model card is left out of the run."""
    from predictions.models import ModelVersion

    if TRAIN and not ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).exists():
        started = time.perf_counter()
        DB.manage("train_model", "--if-no-model", "--seed", "1")
        print(f"trained a champion in {time.perf_counter() - started:.0f} s", flush=True)


def count_the_book_as_the_batch_does() -> None:
    """The team home and a manager's Reports read the portfolio snapshot rows the daily batch
    counts; a reused book may have none yet, or rows counted before the snapshot held the
    Reports' figures, so count it once as the batch would."""
    from predictions.models import PortfolioSnapshot
    from predictions.services import portfolio_snapshot_take

    if not PortfolioSnapshot.objects.filter(taken_at__isnull=False, report_groups__isnull=False).exists():
        started = time.perf_counter()
        rows = portfolio_snapshot_take()
        print(f"counted the book into {rows} snapshot rows in {time.perf_counter() - started:.1f} s", flush=True)


def pages() -> list[tuple[str, object, str]]:
    """(label, user, path) for the baseline and each page measured."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count

    from customers.models import Customer
    from predictions.models import ModelVersion

    users = get_user_model().objects
    admin = users.filter(is_superuser=True).order_by("pk").first()
    manager = users.filter(groups__name="manager").order_by("pk").first()
    # The CSM with the biggest portfolio, and the riskiest customer in it (the one the home lists first).
    csm = users.filter(groups__name="csm").annotate(n=Count("owned_customers")).order_by("-n", "pk").first()
    customer = Customer.objects.filter(owner=csm, is_active=True).order_by("-churn_risk", "id").first()
    champion = ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).order_by("-pk").first()
    both = (("CSM", csm), ("manager", manager))
    interventions = "/admin/interventions/intervention/"
    return [
        ("baseline: stock changelist (auth groups)", admin, "/admin/auth/group/"),
        ("admin home, CSM", csm, "/admin/"),
        ("admin home, manager", manager, "/admin/"),
        ("Customer 360, CSM", csm, f"/admin/customers/customer/{customer.pk}/change/"),
        *((f"Reports, {role}", user, "/admin/reports/") for role, user in both),
        *((f"customer list, {role}", user, "/admin/customers/customer/") for role, user in both),
        *((f"renewals, {role}", user, "/admin/customers/renewal/") for role, user in both),
        *((f"renewal forecast, {role}", user, "/admin/customers/renewal/forecast/") for role, user in both),
        *((f"alerts list, {role}", user, "/admin/alerts/alert/") for role, user in both),
        *((f"intervention analytics, {role}", user, f"{interventions}analytics/") for role, user in both),
        *(
            [("model card, manager", manager, f"/admin/predictions/modelversion/{champion.pk}/change/")]
            if champion
            else []
        ),
    ]


def profile(client, path: str) -> None:
    """Each query of one request with its time; EXPLAIN ANALYZE of the three slowest."""
    from django.db import connection

    timings: list[tuple[float, str, tuple]] = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - started, sql, params))

    with connection.execute_wrapper(timed):
        client.get(path)
    total = sum(t for t, _, _ in timings)
    print(f"\n{path}: {len(timings)} queries, {total * 1000:.1f} ms in the database")
    for seconds, sql, _ in sorted(timings, reverse=True)[:8]:
        print(f"  {seconds * 1000:7.1f} ms  {sql[:150]}")
    for seconds, sql, params in sorted(timings, reverse=True)[:3]:
        if not sql.lstrip().upper().startswith("SELECT") or seconds < 0.005:
            continue
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            plan = "\n".join(f"    {row[0]}" for row in cursor.fetchall())
        print(f"  EXPLAIN ({seconds * 1000:.1f} ms): {sql[:100]}...\n{plan}")


def main() -> None:
    DB.prepare()
    setup_django()
    train_a_champion_once()
    count_the_book_as_the_batch_does()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    measured = []
    for n, (label, user, path) in enumerate(pages()):
        if n and ONLY and not any(part in label for part in ONLY):
            continue
        client = Client()
        client.force_login(user)
        measured.append((label, client, path))
    for label, client, path in measured:
        for _ in range(WARM):  # warm-up: connection, templates, query plans, caches
            response = client.get(path)
            if response.status_code != 200:
                sys.exit(f"{label}: GET {path} answered {response.status_code}")
    samples: dict[str, list[float]] = {label: [] for label, _, _ in measured}
    for _ in range(REQUESTS):
        for label, client, path in measured:
            started = time.perf_counter()
            client.get(path)
            samples[label].append((time.perf_counter() - started) * 1000)
    queries = {}
    for label, client, path in measured:
        with CaptureQueriesContext(connection) as captured:
            client.get(path)
        queries[label] = len(captured)

    baseline_label = measured[0][0]
    baseline = statistics.median(samples[baseline_label])
    print(f"\n{CUSTOMERS:,} customers in PostgreSQL; Django test Client in-process, {REQUESTS} requests per page")
    print(f"load average (uptime): {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} / {os.getloadavg()[2]:.1f}")
    header = f"{'page':42} {'queries':>7} {'median ms':>10} {'p95 ms':>8} {'x baseline':>11}"
    print(f"{header}  target (median)")
    missed = 0
    for label, _, _ in measured:
        times = sorted(samples[label])
        median, p95 = statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]
        target = TIGHTER_TARGET_MS.get(label, TARGET_MS)
        if label == baseline_label:
            verdict = ""
        elif median <= target:
            verdict = f"<= {target:.0f} ms: ok"
        else:
            verdict, missed = f"<= {target:.0f} ms: MISSED", missed + 1
        print(f"{label:42} {queries[label]:7d} {median:10.1f} {p95:8.1f} {median / baseline:10.1f}x  {verdict}")
    print(f"{len(measured) - 1 - missed} of {len(measured) - 1} pages within their target")
    if PROFILE:
        for _label, client, path in measured[1:]:
            profile(client, path)


if __name__ == "__main__":
    main()
