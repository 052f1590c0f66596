"""History import jobs in-process (tasks eager): bad uploads are 4xx JSON naming the field and store
nothing; a job runs the same import as the command; the admin's upload, dry run and confirm.
(The job through a real worker and server: tests/live/test_import_jobs_live.py.)"""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from customers.models import Customer, ImportChunk, ImportJob, NpsResponse

pytestmark = pytest.mark.django_db
EXAMPLES = Path(settings.BASE_DIR) / "docs" / "examples" / "history"
DATA_FILES = sorted(p for p in EXAMPLES.iterdir() if p.name != "mapping.json")


def _upload(name: str, content: bytes = b"x,y\n1,2\n") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def _nothing_stored() -> bool:
    return not ImportJob.objects.exists() and not ImportChunk.objects.exists()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "files", "Attach at least one file (multipart field 'files')."),
        (
            {"files": [_upload("notes.csv")]},
            "files",
            "notes.csv: cannot tell the kind from the file name; name it after a kind (customers, user_sessions,"
            " events, support_tickets, nps_responses, subscriptions).",
        ),
        (
            {"files": [_upload("customers.xlsx")]},
            "files",
            "customers.xlsx: unknown format (expected .csv, .jsonl or .parquet, optionally .gz).",
        ),
        ({"files": [_upload("customers.csv", b"")]}, "files", "customers.csv: the file is empty."),
        (
            {"files": [_upload("customers.csv"), _upload("customers.csv")]},
            "files",
            "customers.csv: two files with the same name.",
        ),
        ({"files": ["not a file"]}, "files", None),
        ({"files": [_upload("customers.csv")], "onError": "ignore"}, "onError", None),
        (
            {"files": [_upload("customers.csv")], "timezone": "Mars/Olympus"},
            "timezone",
            "Unknown time zone 'Mars/Olympus' (an IANA name such as Europe/Paris).",
        ),
        (
            {"files": [_upload("customers.csv")], "mapping": _upload("mapping.json", b"[1, 2]")},
            "mapping",
            "mapping.json: the mapping must be an object of kind -> {column: canonical}.",
        ),
    ],
    ids=["no-file", "wrong-kind", "unknown-format", "empty", "same-name", "not-a-file", "on-error", "tz", "mapping"],
)
def test_a_bad_upload_is_a_400_naming_the_field_and_stores_nothing(manager, api_for, data, field, message):
    for value in data.values():
        for item in value if isinstance(value, list) else [value]:
            if hasattr(item, "seek"):
                item.seek(0)
    response = api_for(manager).post("/api/imports", data, format="multipart")
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["code"], list(body["errors"])) == ("invalid", [field])
    if message is not None:
        assert body["errors"][field] == [message]
    assert _nothing_stored()


def test_too_large_uploads_are_413_naming_the_field(manager, api_for, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 10
    response = api_for(manager).post(
        "/api/imports", {"files": [_upload("customers.csv", b"a" * 11)]}, format="multipart"
    )
    assert response.status_code == 413
    assert response.json()["errors"] == {
        "files": [
            "The files add up to 11 bytes; an upload may hold 10. Import larger books with `manage.py import_history`."
        ]
    }
    # A body far past the limit is refused from its Content-Length, before it is parsed.
    big = {"files": [_upload("customers.csv", b"a" * (2 << 20))]}
    response = api_for(manager).post("/api/imports", big, format="multipart")
    assert response.status_code == 413
    assert response.json()["errors"]["files"][0].startswith("The upload is 2,097,")
    settings.IMPORT_MAX_UPLOAD_BYTES, settings.IMPORT_MAX_FILES = 1 << 20, 1
    two = {"files": [_upload("customers.csv"), _upload("nps.csv")]}
    response = api_for(manager).post("/api/imports", two, format="multipart")
    assert (response.status_code, response.json()["errors"]) == (400, {"files": ["At most 1 files per import."]})
    assert _nothing_stored()


def test_json_instead_of_multipart_is_a_415(manager, api_for):
    response = api_for(manager).post("/api/imports", {"files": []}, format="json")
    assert response.status_code == 415
    assert set(response.json()) == {"message", "code", "errors"}
    assert _nothing_stored()


def test_an_unknown_job_is_a_json_404(manager, api_for):
    for url in ("/api/imports/999999", "/api/imports/999999/errors.csv"):
        response = api_for(manager).get(url)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_a_job_runs_the_import_with_its_options(manager, api_for, django_capture_on_commit_callbacks):
    mapping = b'{"nps_responses": {"Account": "customer", "When": "responded_at", "Rating": "score"}}'
    csv = b"Account,When,Rating\nacme,2024-01-01 09:00,9\nacme,2024-01-02 09:00,11\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(manager).post(
            "/api/imports",
            {
                "files": [
                    _upload(p.name, p.read_bytes())
                    for p in DATA_FILES
                    if p.name in ("customers.csv", "subscriptions.csv")
                ]
            },
            format="multipart",
        )
    assert response.json()["status"] == "queued"  # rendered before the commit that enqueues it
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(manager).post(
            "/api/imports",
            {
                "files": [_upload("nps_responses.csv", csv)],
                "mapping": _upload("mapping.json", mapping),
                "onError": "skip",
                "timezone": "Europe/Paris",
            },
            format="multipart",
        )
    job = api_for(manager).get(f"/api/imports/{response.json()['id']}").json()
    assert (job["status"], job["onError"], job["timezone"], job["errorCount"]) == (
        "succeeded",
        "skip",
        "Europe/Paris",
        1,
    )
    assert job["result"]["totals"] == {"nps_responses": {"inserted": 1, "updated": 0, "unchanged": 0, "rejected": 1}}
    (answer,) = NpsResponse.objects.all()
    assert (answer.score, answer.responded_at.isoformat()) == (9, "2024-01-01T08:00:00+00:00")  # 09:00 in Paris
    assert Customer.objects.count() == 4


def test_the_job_output_matches_its_documenting_serializer(manager, api_for, django_capture_on_commit_callbacks):
    from customers.api.serializers import ImportJobOutputSerializer

    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(manager).post("/api/imports", {"files": [_upload("customers.csv")]}, format="multipart")
    body = api_for(manager).get(f"/api/imports/{response.json()['id']}").json()
    assert set(body) == set(ImportJobOutputSerializer().fields)
    assert set(body["progress"][0]) == {"file", "kind", "bytes", "bytesRead", "rows", "rowsEstimate", "state"}
    assert set(body["result"]["files"][0]) == set(
        ImportJobOutputSerializer().fields["result"].fields["files"].child.fields
    )


# --- The admin ------------------------------------------------------------------------------------


def _admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_admin_upload_dry_run_confirm(manager, django_capture_on_commit_callbacks):
    client = _admin_client(manager)
    add = reverse("admin:customers_importjob_add")
    assert client.get(add).status_code == 200
    files = [_upload(p.name, p.read_bytes()) for p in DATA_FILES]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(add, {"files": files, "on_error": "reject", "timezone": "UTC"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:customers_importjob_change", args=[job.pk]
    )
    assert (job.status, job.dry_run, Customer.objects.count()) == ("succeeded", True, 0)
    page = client.get(response["Location"]).content.decode()
    assert "Dry run summary (nothing written)" in page and 'id="import-confirm"' in page
    assert 'http-equiv="refresh"' not in page  # finished: no more refreshing
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:customers_importjob_confirm", args=[job.pk]))
    job.refresh_from_db()
    assert (job.status, job.dry_run, Customer.objects.count()) == ("succeeded", False, 4)
    assert job.dry_run_result["totals"] == job.result["totals"]
    assert not ImportChunk.objects.exists()
    page = client.get(response["Location"]).content.decode()
    assert "The dry run before it" in page and 'id="import-confirm"' not in page
    # Confirming twice is refused with a message, not a second import.
    response = client.post(reverse("admin:customers_importjob_confirm", args=[job.pk]), follow=True)
    assert "Only an import whose dry run succeeded can be confirmed." in response.content.decode()


def test_admin_upload_refusal_is_shown_on_the_form(manager):
    response = _admin_client(manager).post(
        reverse("admin:customers_importjob_add"),
        {"files": [_upload("notes.csv")], "on_error": "reject", "timezone": "UTC"},
    )
    assert response.status_code == 200
    assert "notes.csv: cannot tell the kind from the file name" in response.content.decode()
    response = _admin_client(manager).post(
        reverse("admin:customers_importjob_add"),
        {"files": [_upload("customers.csv")], "on_error": "reject", "timezone": "Mars/Olympus"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "timezone": ["Unknown time zone 'Mars/Olympus' (an IANA name such as Europe/Paris)."]
    }
    assert _nothing_stored()


@pytest.mark.parametrize("role", ["csm", "viewer"])
def test_admin_import_pages_are_for_managers_and_admins(request, role):
    job = ImportJob.objects.create(files=[{"name": "customers.csv", "kind": "customers", "size": 1}])
    client = _admin_client(request.getfixturevalue(role))
    for url in (
        reverse("admin:customers_importjob_changelist"),
        reverse("admin:customers_importjob_add"),
        reverse("admin:customers_importjob_change", args=[job.pk]),
        reverse("admin:customers_importjob_errors", args=[job.pk]),
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("admin:customers_importjob_confirm", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert (job.status, job.dry_run) == ("queued", True)


def _through_the_guard(path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple[int, dict | None]:
    """One POST through the ASGI body guard in front of Django; (status, JSON body or None if it passed)."""
    import asyncio

    import orjson

    from core.api.body_limit import BoundedBody

    sent: list[dict] = []

    async def app(scope, receive, send) -> None:
        sent.append({"passed": True})

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    asyncio.run(BoundedBody(app)(scope, receive, send))
    if sent[0].get("passed"):
        return 200, None
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def test_the_body_guard_lets_uploads_up_to_the_import_limit_and_names_the_field(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE, settings.IMPORT_MAX_UPLOAD_BYTES = 1000, 10 << 20
    six_mib = [(b"content-length", str(6 << 20).encode())]
    assert _through_the_guard("/api/imports", six_mib) == (200, None)
    assert _through_the_guard("/admin/customers/importjob/add/", six_mib) == (200, None)
    assert _through_the_guard("/api/interventions", six_mib)[0] == 413  # other bodies keep their limit
    status, body = _through_the_guard("/api/imports", [(b"content-length", str(12 << 20).encode())])
    assert (status, body["errors"]) == (
        413,
        {"files": ["The upload is 12,582,912 bytes; at most 10,485,760 are accepted."]},
    )
    status, body = _through_the_guard("/api/imports", [], b"x")  # chunked: no length to check up front
    assert (status, body["errors"]) == (411, {"files": ["An upload of files must declare its Content-Length."]})
