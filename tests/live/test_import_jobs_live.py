"""History import jobs end to end: uploaded to a real uvicorn, imported by a real Celery worker over
Redis, polled over HTTP; the per-row error report downloads as CSV."""

import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from core.auth.tokens import issue_tokens
from customers.models import Customer, ImportChunk, ImportJob, NpsResponse, Subscription, SupportTicket, UserSession
from tests.live.conftest import service_env
from tests.live.test_webhooks_live import start_web, start_worker

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
EXAMPLES = Path(settings.BASE_DIR) / "docs" / "examples" / "history"
KINDS = ["customers", "subscriptions", "user_sessions", "events", "support_tickets", "nps_responses"]
EXAMPLE_TOTALS = {
    "customers": {"inserted": 4, "updated": 0, "unchanged": 0, "rejected": 0},
    "subscriptions": {"inserted": 5, "updated": 0, "unchanged": 0, "rejected": 0},
    "user_sessions": {"inserted": 5, "updated": 0, "unchanged": 0, "rejected": 0},
    "events": {"inserted": 2, "updated": 0, "unchanged": 0, "rejected": 0},
    "support_tickets": {"inserted": 4, "updated": 0, "unchanged": 0, "rejected": 0},
    "nps_responses": {"inserted": 3, "updated": 0, "unchanged": 0, "rejected": 0},
}


def example_files() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (path.name, path.read_bytes(), "application/octet-stream"))
        for path in sorted(EXAMPLES.iterdir())
        if path.name != "mapping.json"
    ]


def wait_for(client: httpx.Client, job_id: int, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/imports/{job_id}").json()
        if body["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def test_an_uploaded_book_is_imported_by_the_worker(start_process, redis_url, manager):
    env = service_env(REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false")
    base = start_web(start_process, env)
    start_worker(start_process, env)
    token = issue_tokens(manager)["access"]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        # A dry run: counted by the worker, nothing written, the files kept for the real run.
        response = client.post("/api/imports", files=example_files(), data={"dryRun": "true"})
        assert response.status_code == 202, response.text
        dry = wait_for(client, response.json()["id"])
        assert response.headers["Location"] == f"/api/imports/{dry['id']}"
        assert (dry["status"], dry["dryRun"], dry["error"], dry["errorCount"]) == ("succeeded", True, "", 0)
        assert dry["result"]["totals"] == EXAMPLE_TOTALS
        assert Customer.objects.count() == 0
        assert ImportChunk.objects.filter(job_id=dry["id"]).count() == 6

        # The import itself.
        response = client.post("/api/imports", files=example_files(), data={"timezone": "UTC"})
        job = wait_for(client, response.json()["id"])
        assert (job["status"], job["dryRun"], job["createdBy"]) == ("succeeded", False, manager.username)
        assert job["result"]["totals"] == EXAMPLE_TOTALS
        assert [f["kind"] for f in job["result"]["files"]] == KINDS
        assert all(f["imported"] for f in job["result"]["files"])
        assert [(p["file"], p["state"], p["rows"], p["bytesRead"] == p["bytes"]) for p in job["progress"]] == [
            ("customers.csv", "done", 4, True),
            ("events.jsonl", "done", 5, True),
            ("nps_responses.csv", "done", 3, True),
            ("subscriptions.csv", "done", 5, True),
            ("support_tickets.csv", "done", 4, True),
            ("user_sessions.csv", "done", 5, True),
        ]
        counts = [m.objects.count() for m in (Customer, Subscription, UserSession, SupportTicket, NpsResponse)]
        assert counts == [4, 5, 7, 4, 3]
        assert ImportChunk.objects.filter(job_id=job["id"]).count() == 0  # files dropped once imported
        report = client.get(f"/api/imports/{job['id']}/errors.csv")
        assert (report.status_code, report.text) == (200, "file,line,column,message\n")

        # A file with bad rows imports nothing, and the report names each one.
        bad = b"customer,responded_at,score\nacme,2024-01-01,11\nnobody,2024-01-02,5\n=cmd,2024-01-03,3\n"
        response = client.post("/api/imports", files=[("files", ("nps_responses.csv", bad, "text/csv"))])
        failed = wait_for(client, response.json()["id"])
        assert (failed["status"], failed["errorCount"]) == ("failed", 3)
        assert failed["result"]["files"][0]["error"] == "3 bad row(s): nothing of this file was imported."
        assert NpsResponse.objects.count() == 3
        report = client.get(f"/api/imports/{failed['id']}/errors.csv")
        assert report.headers["content-type"] == "text/csv; charset=utf-8"
        assert report.text.splitlines() == [
            "file,line,column,message",
            "nps_responses.csv,2,score,score: 11 is out of range (must be between 0 and 10).",
            "nps_responses.csv,3,customer,customer: no customer has the external id or e-mail 'nobody'.",
            "nps_responses.csv,4,customer,customer: no customer has the external id or e-mail '=cmd'.",
        ]
    assert ImportJob.objects.count() == 3


def test_progress_is_visible_while_a_large_file_is_read(start_process, redis_url, manager, make_customer):
    """The file's import is one open transaction: progress is written on a connection of its own."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: there a job's progress is written when it ends")
    make_customer(external_id="acme", email="ops@acme.example")
    rows = 150_000
    lines = ["external_id,customer,started_at,pages_viewed"]
    lines += [f"s{i},acme,2024-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z,{i % 7}" for i in range(rows)]
    body = ("\n".join(lines) + "\n").encode()
    env = service_env(REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false")
    base = start_web(start_process, env)
    start_worker(start_process, env)
    token = issue_tokens(manager)["access"]
    seen: list[tuple[str, str, int]] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        response = client.post("/api/imports", files=[("files", ("user_sessions.csv", body, "text/csv"))])
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(f"/api/imports/{job_id}").json()
            (progress,) = job["progress"]
            seen.append((job["status"], progress["state"], progress["rows"]))
            if job["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
    assert seen[-1] == ("succeeded", "done", rows)
    during = [(state, read) for status, state, read in seen if status == "running" and 0 < read < rows]
    assert during, seen  # rows counted while the file was still being read
    assert all(state == "reading" for state, _ in during)
    assert job["result"]["totals"] == {"user_sessions": {"inserted": rows, "updated": 0, "unchanged": 0, "rejected": 0}}
