"""Import jobs: history files uploaded through the API or the admin, imported by a worker.

The files are stored in the database in chunks (`ImportChunk`), so the web host that took the
upload and the worker host that imports it need no shared disk; the worker copies them to a
temporary directory of its own and runs the same `import_history` as the command. Progress is
written to the job row while a file is read (at most once a second, from a thread with its own
connection, because the file's import is one open transaction), and the result and the rejected
rows when the run ends. The files are deleted once the import itself (not a dry run) has run.
"""

import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, connections, transaction
from django.utils import timezone

from core.enqueue import task_named
from core.exceptions import ConflictError
from customers.history.kinds import KINDS, kind_of_file
from customers.history.readers import FileError, file_format
from customers.history.services import ImportError_, ImportResult, import_history, parse_mapping
from customers.models import ImportChunk, ImportJob

CHUNK_BYTES = 4 << 20  # one stored piece of an uploaded file
PROGRESS_SECONDS = 1.0  # the job row is written at most this often while a file is read


class UploadError(ValueError):
    """An upload that cannot become a job; `field` names the form field at fault, `too_large`
    says it is refused for its size."""

    def __init__(self, field: str, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.field, self.too_large = field, too_large


def _safe_name(name: str) -> str:
    """The file's own name (no directories), as the kind and format are read from it."""
    base = Path(name.replace("\\", "/")).name.strip()
    return "".join(c for c in base if c.isalnum() or c in "._- ")[:200]


def check_upload(files: list[UploadedFile]) -> list[dict[str, Any]]:
    """Each file's name, kind and size, or UploadError naming what is wrong (nothing stored)."""
    if not files:
        raise UploadError("files", "Attach at least one file (multipart field 'files').")
    if len(files) > settings.IMPORT_MAX_FILES:
        raise UploadError("files", f"At most {settings.IMPORT_MAX_FILES} files per import.")
    total = sum(f.size or 0 for f in files)
    if total > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise UploadError(
            "files",
            f"The files add up to {total:,} bytes; an upload may hold {settings.IMPORT_MAX_UPLOAD_BYTES:,}."
            " Import larger books with `manage.py import_history`.",
            too_large=True,
        )
    described, seen = [], set()
    for upload in files:
        name = _safe_name(upload.name or "")
        if not name:
            raise UploadError("files", "A file has no name; the kind is read from the name (e.g. customers.csv).")
        try:
            file_format(Path(name))
        except FileError as error:
            raise UploadError("files", str(error)) from None
        kind = kind_of_file(name.split(".")[0])
        if kind is None:
            raise UploadError(
                "files", f"{name}: cannot tell the kind from the file name; name it after a kind ({', '.join(KINDS)})."
            )
        if name in seen:
            raise UploadError("files", f"{name}: two files with the same name.")
        if not upload.size:
            raise UploadError("files", f"{name}: the file is empty.")
        seen.add(name)
        described.append({"name": name, "kind": kind, "size": upload.size})
    return described


def check_options(*, on_error: str, tz: str, mapping: bytes | None, mapping_name: str) -> dict[str, Any] | None:
    """The parsed mapping, after checking the options (UploadError names the bad one)."""
    if on_error not in ImportJob.OnError.values:
        raise UploadError("onError", "Must be reject or skip.")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UploadError("timezone", f"Unknown time zone {tz!r} (an IANA name such as Europe/Paris).") from None
    if not mapping:
        return None
    try:
        return parse_mapping(mapping, mapping_name)
    except ImportError_ as error:
        raise UploadError("mapping", str(error)) from None


@transaction.atomic
def import_job_create(
    *,
    user: Any,
    files: list[UploadedFile],
    dry_run: bool,
    on_error: str = ImportJob.OnError.REJECT,
    tz: str = "UTC",
    mapping: dict[str, Any] | None = None,
) -> ImportJob:
    """Store the uploaded files and queue their import (after commit)."""
    described = check_upload(files)
    job = ImportJob.objects.create(
        created_by=user if user and user.is_authenticated else None,
        dry_run=dry_run,
        on_error=on_error,
        timezone=tz,
        mapping=mapping,
        files=described,
        progress=[_file_progress(f) for f in described],
    )
    for number, upload in enumerate(files):
        upload.seek(0)
        for index, data in enumerate(upload.chunks(CHUNK_BYTES)):
            ImportChunk.objects.create(job=job, file=number, index=index, data=data)
    _enqueue(job.pk)
    return job


def import_job_confirm(*, job_id: int) -> ImportJob:
    """Run a dry-run job again for real, on the same files (only after a clean dry run)."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if not job.dry_run or job.status != ImportJob.Status.SUCCEEDED:
            raise ConflictError("Only an import whose dry run succeeded can be confirmed.")
        job.dry_run_result = job.result
        job.dry_run = False
        job.status = ImportJob.Status.QUEUED
        job.result, job.errors, job.error = None, [], ""
        job.progress = [_file_progress(f) for f in job.files]
        job.started_at = job.finished_at = None
        job.save()
        _enqueue(job.pk)
    return job


def _enqueue(job_id: int) -> None:
    # By name: the task module imports this one.
    transaction.on_commit(lambda: task_named("customers.tasks.run_import_job").delay(job_id))


def _file_progress(described: dict[str, Any]) -> dict[str, Any]:
    return {
        "file": described["name"],
        "kind": described["kind"],
        "bytes": described["size"],
        "bytesRead": 0,
        "rows": 0,
        "rowsEstimate": None,
        "state": "pending",
    }


def import_job_run(*, job_id: int) -> None:
    """Import a job's files (the worker's task). A job already finished is left alone; one left
    running by a worker that died is run again (the import is idempotent)."""
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    ).update(status=ImportJob.Status.RUNNING, started_at=timezone.now(), finished_at=None, error="")
    if not claimed:
        return
    job = ImportJob.objects.get(pk=job_id)
    directory = Path(tempfile.mkdtemp(prefix=f"churnshield-import-{job.pk}-"))
    reporter = _JobProgress(job)
    try:
        paths = _write_files(job, directory)
        result = import_history(
            paths=paths,
            mapping=job.mapping,
            on_error=job.on_error,
            tz=job.timezone,
            dry_run=job.dry_run,
            progress=reporter.open,
        )
    except BaseException as error:  # a crash, a time limit: the job says so instead of staying "running"
        reporter.stop()
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            error=f"The import stopped: {error.__class__.__name__}: {error}"[:2000],
            finished_at=timezone.now(),
        )
        raise
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    reporter.stop()
    _finish(job, result, reporter.progress)


def _write_files(job: ImportJob, directory: Path) -> list[Path]:
    paths = []
    for number, described in enumerate(job.files):
        path = directory / described["name"]
        with open(path, "wb") as out:
            pieces = ImportChunk.objects.filter(job=job, file=number).order_by("index").values_list("data", flat=True)
            for data in pieces.iterator(chunk_size=1):
                out.write(data)
        paths.append(path)
    return paths


def _finish(job: ImportJob, result: ImportResult, progress: list[dict[str, Any]]) -> None:
    files = [
        {
            "file": Path(f.path).name,
            "kind": f.kind,
            "rows": f.rows,
            "inserted": f.inserted,
            "updated": f.updated,
            "unchanged": f.unchanged,
            "rejected": f.rejected,
            "imported": f.written,
            "error": f.fatal,
            "unknownColumns": f.unknown_columns,
        }
        for f in result.files
    ]
    errors = [[p.file, p.line, p.column, p.message] for f in result.files for p in f.problems]
    failed = any(f.fatal for f in result.files)
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED if failed else ImportJob.Status.SUCCEEDED,
            result={"files": files, "totals": result.totals(), "dryRun": result.dry_run},
            errors=errors,
            error="Some files were not imported (see the errors)." if failed else "",
            progress=progress,
            finished_at=timezone.now(),
        )
        if not job.dry_run:
            ImportChunk.objects.filter(job_id=job.pk).delete()


@dataclass
class _FileBar:
    """The Progress of one file: counts bytes and rows, and asks the job to save now and then."""

    job: "_JobProgress"
    entry: dict[str, Any]

    def update(self, n: int) -> None:
        self.entry["bytesRead"] += n
        self.entry["state"] = "reading"
        self.job.changed()

    def rows(self, n: int, *, writing: bool = False) -> None:
        self.entry["rows"] = n
        read, size = self.entry["bytesRead"], self.entry["bytes"]
        if writing:
            self.entry["state"], self.entry["rowsEstimate"] = "writing", n
        elif read:
            self.entry["rowsEstimate"] = max(n, round(n * size / read))
        self.job.changed()

    def close(self) -> None:
        self.entry["state"] = "done"
        self.entry["bytesRead"] = self.entry["bytes"]
        self.job.save_now()


class _JobProgress:
    """Writes the job's progress from a thread with its own connection (so readers see it while
    the import's transaction is open: a file, or a whole dry run), at the start and end of each
    file and at most once a second in between. SQLite allows one writer at a time: there the job
    shows its progress when it ends (embedded tasks run in-process anyway)."""

    def __init__(self, job: ImportJob) -> None:
        self.job_id = job.pk
        self.progress: list[dict[str, Any]] = [dict(p) for p in job.progress]
        self.lock = threading.Lock()
        self.last = 0.0
        self.pool = ThreadPoolExecutor(max_workers=1) if connection.vendor == "postgresql" else None
        self.pending: Future | None = None

    def open(self, path: Path, size: int) -> _FileBar:
        entry = next(p for p in self.progress if p["file"] == path.name)
        entry.update(bytes=size, bytesRead=0, state="reading")
        self.save_now()
        return _FileBar(self, entry)

    def changed(self) -> None:
        if self.pool is None or time.monotonic() - self.last < PROGRESS_SECONDS:
            return
        if self.pending is not None and not self.pending.done():
            return  # the previous write is still on its way: skip this one
        self.last = time.monotonic()
        self.pending = self.pool.submit(self._write, self._copy())

    def save_now(self) -> None:
        if self.pool is None:
            return
        self._drain()
        self.last = time.monotonic()
        self.pool.submit(self._write, self._copy()).result()

    def _copy(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(p) for p in self.progress]

    def _write(self, progress: list[dict[str, Any]]) -> None:
        try:
            ImportJob.objects.filter(pk=self.job_id).update(progress=progress)
        finally:
            connections.close_all()  # this thread's own connection (back to the pool)

    def _drain(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def stop(self) -> None:
        if self.pool is not None:
            try:
                self._drain()
            finally:
                self.pool.shutdown(wait=True)
                self.pool = None
