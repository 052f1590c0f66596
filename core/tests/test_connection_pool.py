"""When PostgreSQL drops every connection at once (a restart, terminated backends), the next query
gets a live connection right away instead of walking the pool's dead ones with pauses between
them until the pool gives up (core/postgresql/base.py)."""

import threading

import psycopg
import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)
HELD = 8  # under the pool's max size (10), over what the pool's pauses let a checkout try in time


def _in_thread(work):
    """Run `work` on a thread of its own (its own Django connection), re-raising what it raised."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed back to the test
            outcome["error"] = error
        finally:
            connection.close()  # back to the pool

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_a_query_after_every_idle_pooled_connection_died_gets_a_live_connection():
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (SQLite has none)")
    pool = connection.pool
    pids: list[int] = []
    all_held = threading.Barrier(HELD)

    def hold() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
        all_held.wait(30)  # every thread holds one at once: the pool ends with HELD distinct ones

    threads = [threading.Thread(target=_in_thread, args=(hold,)) for _ in range(HELD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(set(pids)) == HELD and pool.get_stats()["pool_available"] >= HELD

    params = connection.get_connection_params()
    params.pop("options", None)
    with psycopg.connect(**{**params, "autocommit": True}) as admin:
        terminated = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest(%s::int[]) AS pid", [pids]
        ).fetchone()[0]
    assert terminated == HELD
    lost_before = pool.get_stats().get("connections_lost", 0)

    def query() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0]

    assert _in_thread(query) == 1  # without the sweep: PoolTimeout after the pool's timeout
    # The first dead one failed its check; the sweep found the other ones at once.
    assert pool.get_stats().get("connections_lost", 0) - lost_before == HELD
