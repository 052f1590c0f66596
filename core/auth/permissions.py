"""The default permission of every API view: authenticated, with a role; viewers only read."""

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from core.auth.roles import Role, can_write, role_of


class RoleBasedPermission(BasePermission):
    message = "Your role does not allow this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if request.method in SAFE_METHODS:
            return role_of(request.user) is not None
        return can_write(request.user)


class IsManagerOrAdmin(BasePermission):
    """For operations on the whole book of business (configuration, imports of other owners)."""

    message = "Only managers and admins may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return role_of(request.user) in {Role.ADMIN, Role.MANAGER}


class AnyRole(BasePermission):
    """For POST endpoints that compute an answer without changing anyone's data (predict, explain):
    every role may call them, viewers included."""

    message = "Your account has no role."

    def has_permission(self, request: Request, view: Any) -> bool:
        return role_of(request.user) is not None
