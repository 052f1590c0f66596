"""Roles are Django groups: admin, manager, csm, viewer (created by a data migration).

- admin, manager: see and change every customer;
- csm: sees and changes only the customers they own (their portfolio);
- viewer: sees every customer, changes nothing.
A superuser counts as admin. A user in no role group may sign in but reaches no data.
"""

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    CSM = "csm"
    VIEWER = "viewer"


# When a user is in several role groups, the strongest wins.
ROLE_RANK = [Role.ADMIN, Role.MANAGER, Role.CSM, Role.VIEWER]
ROLE_NAMES = [role.value for role in ROLE_RANK]
SEES_ALL = {Role.ADMIN, Role.MANAGER, Role.VIEWER}
CAN_WRITE = {Role.ADMIN, Role.MANAGER, Role.CSM}
_CACHE_ATTR = "_churnshield_role"


def role_of(user: AbstractBaseUser | AnonymousUser | None) -> Role | None:
    """The user's role, or None for anonymous users and users without a role group.

    One small query per request, cached on the user object; never cached longer, so a role change
    takes effect on the next request.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    if hasattr(user, _CACHE_ATTR):
        return getattr(user, _CACHE_ATTR)
    names = set(Group.objects.filter(user=user, name__in=ROLE_NAMES).values_list("name", flat=True))
    role = next((role for role in ROLE_RANK if role.value in names), None)
    setattr(user, _CACHE_ATTR, role)
    return role


def sees_all_customers(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return role_of(user) in SEES_ALL


def can_write(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return role_of(user) in CAN_WRITE
