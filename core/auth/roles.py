"""Roles are Django groups: admin, manager, csm, viewer (created by a data migration).

- admin, manager: see and change every customer;
- csm: sees and changes only the customers they own (their portfolio);
- viewer: sees every customer, changes nothing.
A superuser counts as admin. A user in no role group may sign in but reaches no data.
"""

from enum import StrEnum
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db import connection


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


@cache
def _user_with_role_sql() -> tuple[str, list[str]]:
    user_model = get_user_model()
    fields = user_model._meta.concrete_fields
    memberships = user_model.groups.through._meta.db_table
    columns = ", ".join(f"u.{connection.ops.quote_name(field.column)}" for field in fields)
    sql = (
        f"SELECT {columns}, g.name FROM {user_model._meta.db_table} u "  # noqa: S608 (names from model meta)
        f"LEFT JOIN {memberships} ug ON ug.user_id = u.id "
        f"LEFT JOIN {Group._meta.db_table} g ON g.id = ug.group_id AND g.name IN (%s, %s, %s, %s) "
        "WHERE u.id = %s"
    )
    return sql, [field.attname for field in fields]


def user_with_role(user_id: Any) -> AbstractBaseUser | None:
    """The user and their role in one cheap query (every API request makes it).

    A raw join on a plain cursor, the user built by `Model.from_db`: the ORM's equivalent (a
    ranked subquery annotation) costs several times more CPU to compile than the database spends
    answering it, and a RawQuerySet maps its columns again on every call.
    """
    sql, attnames = _user_with_role_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [*ROLE_NAMES, user_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    names = {row[-1] for row in rows}
    user = get_user_model().from_db(connection.alias, attnames, rows[0][:-1])
    setattr(user, _CACHE_ATTR, next((role for role in ROLE_RANK if role.value in names), None))
    return user


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
