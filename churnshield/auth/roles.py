"""Roles are Django groups: admin, manager, csm, viewer (created by a data migration).

- admin, manager: see and change every customer;
- csm: sees and changes only the customers they own (their portfolio);
- viewer: sees every customer, changes nothing.
A superuser counts as admin. A user in no role group may sign in but reaches no data.
"""

from enum import StrEnum

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Case, IntegerField, OuterRef, QuerySet, Subquery, Value, When


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    CSM = "csm"
    VIEWER = "viewer"


# When a user is in several role groups, the strongest wins.
ROLE_RANK = [Role.ADMIN, Role.MANAGER, Role.CSM, Role.VIEWER]
SEES_ALL = {Role.ADMIN, Role.MANAGER, Role.VIEWER}
CAN_WRITE = {Role.ADMIN, Role.MANAGER, Role.CSM}
_CACHE_ATTR = "_churnshield_role"


def users_with_role() -> QuerySet:
    """Users annotated with `role_name`, so a request resolves its user and role in one query."""
    rank = Case(
        *[When(name=role.value, then=Value(index)) for index, role in enumerate(ROLE_RANK)],
        output_field=IntegerField(),
    )
    strongest = (
        Group.objects.filter(user=OuterRef("pk"), name__in=[r.value for r in ROLE_RANK])
        .annotate(rank=rank)
        .order_by("rank")
        .values("name")[:1]
    )
    return get_user_model().objects.annotate(role_name=Subquery(strongest))


def role_of(user: AbstractBaseUser | AnonymousUser | None) -> Role | None:
    """The user's role, or None for anonymous users and users without a role group."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    if hasattr(user, _CACHE_ATTR):
        return getattr(user, _CACHE_ATTR)
    if hasattr(user, "role_name"):
        name = user.role_name
    else:
        name = users_with_role().filter(pk=user.pk).values_list("role_name", flat=True).first()
    role = Role(name) if name else None
    setattr(user, _CACHE_ATTR, role)
    return role


def sees_all_customers(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return role_of(user) in SEES_ALL


def can_write(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return role_of(user) in CAN_WRITE
