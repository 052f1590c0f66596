"""Role and portfolio scoping for the Django admin: the same rules as the API (`core.auth.roles`).

Every domain ModelAdmin inherits `PortfolioScopedAdmin` and declares its scope, one of:
- `customer_path`: the path from its model to the owning CSM, so a CSM sees only their own
  portfolio and everything hanging off it;
- `book_wide = True`: reference data every role reads (playbooks, the list of churn causes), which
  must show a CSM nothing counted over other portfolios;
- neither: book-wide plumbing (integrations, webhook deliveries, scoring runs, the model registry)
  for admins, managers and viewers; a CSM cannot open it at all.
Admins, managers and viewers see the whole book. Declaring nothing closes the page to CSMs, so a
new admin that forgets its scope leaks nothing; an object outside the scope is a 404 as in the API.
`tests/test_admin_scope.py` holds every registered admin page to this.
"""

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.forms import BaseInlineFormSet, ModelChoiceField
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from core.auth.roles import Role, can_write, role_of, sees_all_customers
from customers.models import Customer
from customers.selectors import customer_scope


def scope_to_portfolio(
    queryset: QuerySet, user: Any, customer_path: str | None, *, book_wide: bool = False
) -> QuerySet:
    """Rows the user may see: all for admins/managers/viewers, their own portfolio for CSMs, none otherwise.

    `customer_path` is the lookup from the model to the owning user ("owner", "customer__owner");
    `book_wide` marks reference data every role reads (playbooks); a table with neither is
    plumbing a CSM never sees (webhook deliveries, scoring runs).
    """
    role = role_of(user)
    if role is None:
        return queryset.none()
    if sees_all_customers(user) or book_wide:
        return queryset
    if customer_path is None:
        return queryset.none()
    return queryset.filter(**{customer_path: user.pk})


def is_csm(request: HttpRequest) -> bool:
    """Whether the signed-in user works a portfolio (and so gets the narrowed forms)."""
    return role_of(request.user) == Role.CSM


def is_admin_role(request: HttpRequest) -> bool:
    """Whether the signed-in user is an admin (superusers count as admins)."""
    return role_of(request.user) == Role.ADMIN


def changelist_link(model: type[Model], label: str, **params: Any) -> str:
    """An HTML link to a model's admin changelist, filtered by `params` (e.g. customer__id__exact=3)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), label)


class PortfolioScopedAdmin(admin.ModelAdmin):
    """A ModelAdmin that applies roles and portfolio scoping on top of Django's model permissions.

    - the changelist, change, delete and history views and the actions only ever see
      `scope_to_portfolio(...)`; anything else is a 404 (not Django's redirect-with-message, which
      would differ from "does not exist" only by wording and so leak existence);
    - reading needs a role, writing needs a role that may write (viewers never write, whatever
      permissions a group is given by mistake), on top of the model permissions;
    - a page with neither `customer_path` nor `book_wide` is closed to CSMs (403), whatever
      permissions their group holds;
    - foreign keys to customers only offer the user's own customers.
    The admin site adds the CSV and XLSX exports of the changelist (`core.exports`),
    whose rows are this `get_queryset`'s.
    """

    customer_path: str | None = None
    book_wide: bool = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_to_portfolio(
            super().get_queryset(request), request.user, self.customer_path, book_wide=self.book_wide
        )

    def _opens_for(self, request: HttpRequest) -> bool:
        """Whether the user's role may open this page at all (before model permissions)."""
        role = role_of(request.user)
        if role == Role.CSM:
            return bool(self.customer_path) or self.book_wide
        return role is not None

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Model:
        """The object if it is in the user's scope; otherwise 404, as the API answers."""
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"{self.opts.verbose_name} not found")
        return obj

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._opens_for(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._opens_for(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._opens_for(request) and can_write(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._opens_for(request) and can_write(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._opens_for(request) and can_write(request.user) and super().has_delete_permission(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> ModelChoiceField | None:
        """Offer (and accept) only customers in the user's portfolio."""
        if db_field.related_model is Customer and "queryset" not in kwargs:
            kwargs["queryset"] = customer_scope(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class EngineRowsAdmin(PortfolioScopedAdmin):
    """Rows the engine writes and works through (executions, deliveries, webhook events, sync runs).

    Nobody adds, edits or deletes them here: a hand-edited status or a deleted row would leave the
    engine's leases, retries and dedupe in a state it never produced. What a person may do to them
    is an explicit action (cancel, retry, replay) calling a service, gated by `operate`: a role
    that writes and may open the page, the rule the API applies to the same actions (a CSM's group
    only views these models, yet cancels their own customers' executions); the service checks
    the scope again.

    Their own delete page and bulk delete are refused, but `has_delete_permission` keeps the model
    permission: deleting a customer takes its executions and deliveries with it, and Django asks
    every related admin before it cascades.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        self.get_object(request, unquote(object_id))  # outside the scope: 404, as every other page
        raise PermissionDenied

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        return super().change_view(request, object_id, form_url, {"show_delete": False, **(extra_context or {})})

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and can_write(request.user)


class RoleGatedInlineMixin:
    """Inline permissions need a writing role on top of model permissions, like `PortfolioScopedAdmin`."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_write(request.user) and super().has_add_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_write(request.user) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_write(request.user) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class LatestRowsFormSet(BaseInlineFormSet):
    """An inline formset showing only the newest `max_rows` rows (in the model's ordering).

    A customer can have thousands of sessions; rendering them all would make the change page
    unusable. Slicing happens after the parent filter, which Django's formset applies itself.
    """

    max_rows = 20

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_queryset"):
            queryset = super().get_queryset()
            self._queryset = queryset if queryset.query.is_sliced else queryset[: self.max_rows]
        return self._queryset


def latest_rows_formset(limit: int) -> type[LatestRowsFormSet]:
    """A `LatestRowsFormSet` subclass limited to `limit` rows."""
    return type(f"Latest{limit}RowsFormSet", (LatestRowsFormSet,), {"max_rows": limit})


class ReadOnlyTabularInline(admin.TabularInline):
    """A read-only, bounded list of related rows with links to each row's own page."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
