"""Admin pages of history imports: upload files, read the dry run, confirm, watch the import.

Managers and admins only (uploaded files name every portfolio's customers). The job page
refreshes itself (a meta refresh: no script, so nothing for the CSP to allow) until the job ends.
"""

import csv
import io
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from core.auth.roles import Role, role_of
from core.exceptions import ConflictError
from customers import selectors
from customers.admin_scoping import PortfolioScopedAdmin
from customers.history.jobs import UploadError, check_options, import_job_confirm, import_job_create
from customers.models import ImportJob

REFRESH_SECONDS = 2
SHOWN_ERRORS = 50


class _MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class _MultipleFileField(forms.FileField):
    widget = _MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list:
        files = data if isinstance(data, list | tuple) else [data] if data else []
        return [super(_MultipleFileField, self).clean(f, initial) for f in files]


class ImportUploadForm(forms.Form):
    files = _MultipleFileField(
        help_text="One file per kind, named after it: customers.csv, subscriptions.csv, user_sessions.csv.gz,"
        " events.jsonl, support_tickets.csv, nps_responses.parquet…",
    )
    on_error = forms.ChoiceField(choices=ImportJob.OnError.choices, initial=ImportJob.OnError.REJECT)
    timezone = forms.CharField(initial="UTC", help_text="Zone of timestamps written without an offset")
    mapping = forms.FileField(required=False, help_text="Optional JSON or TOML file: your column -> ours, per kind")


@admin.register(ImportJob)
class ImportJobAdmin(PortfolioScopedAdmin):
    """Uploads start as a dry run; its summary is confirmed on the job's page."""

    list_display = ("id", "status", "dry_run", "file_names", "created_by", "created_at", "finished_at")
    list_filter = ("status", "dry_run")
    list_select_related = ("created_by",)

    def _opens_for(self, request: HttpRequest) -> bool:
        return role_of(request.user) in (Role.ADMIN, Role.MANAGER)

    def has_change_permission(self, request: HttpRequest, obj: ImportJob | None = None) -> bool:
        return False  # a job is changed by running it, not by editing its row

    @admin.display(description="Files")
    def file_names(self, obj: ImportJob) -> str:
        return ", ".join(f["name"] for f in obj.files)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/confirm/", wrap(self.confirm_view), name="customers_importjob_confirm"),
            path("<path:object_id>/errors.csv", wrap(self.errors_view), name="customers_importjob_errors"),
            *super().get_urls(),
        ]

    def _job(self, request: HttpRequest, object_id: str) -> ImportJob:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not str(object_id).isdigit():
            raise Http404("Import not found")
        return get_object_or_404(self.get_queryset(request), pk=int(object_id))

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            mapping_file = data.get("mapping")
            try:
                mapping = check_options(
                    on_error=data["on_error"],
                    tz=data["timezone"],
                    mapping=mapping_file.read() if mapping_file else None,
                    mapping_name=mapping_file.name if mapping_file else "mapping.json",
                )
                job = import_job_create(
                    user=request.user,
                    files=data["files"],
                    dry_run=True,
                    on_error=data["on_error"],
                    tz=data["timezone"],
                    mapping=mapping,
                )
            except UploadError as error:
                field = {"onError": "on_error"}.get(error.field, error.field)
                form.add_error(field if field in form.fields else None, str(error))
            else:
                return HttpResponseRedirect(reverse("admin:customers_importjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import history",
            "opts": self.opts,
            "form": form,
        }
        return TemplateResponse(request, "admin/customers/importjob/upload.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        job = self._job(request, object_id)
        result = job.result or {}
        context = {
            **self.admin_site.each_context(request),
            "title": f"History import {job.pk}",
            "opts": self.opts,
            "original": job,
            "job": job,
            "refresh": None if job.finished else REFRESH_SECONDS,
            "progress": [
                {**p, "percent": round(100 * p["bytesRead"] / p["bytes"]) if p["bytes"] else 100} for p in job.progress
            ],
            "files": result.get("files", []),
            "totals": sorted(result.get("totals", {}).items()),
            "dry_run_totals": sorted((job.dry_run_result or {}).get("totals", {}).items()),
            "errors": job.errors[:SHOWN_ERRORS],
            "error_count": len(job.errors),
            "can_confirm": (
                job.dry_run and job.status == ImportJob.Status.SUCCEEDED and self.has_add_permission(request)
            ),
        }
        return TemplateResponse(request, "admin/customers/importjob/job.html", context)

    def confirm_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._job(request, object_id)
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        try:
            import_job_confirm(job_id=job.pk)
        except ConflictError as error:
            messages.error(request, str(error))
        return HttpResponseRedirect(reverse("admin:customers_importjob_change", args=[job.pk]))

    def errors_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._job(request, object_id)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(selectors.import_job_error_rows(job))
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        return response
