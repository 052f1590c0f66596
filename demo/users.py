"""Demo staff users: CSMs, managers, a viewer and the demo admin, created idempotently."""

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser, Group

from demo import vocab

DEFAULT_PASSWORD = "churnshield-demo"
ADMIN_USERNAME = "demo"
VIEWER_USERNAME = "viewer"
MAX_CSMS = len(vocab.CSM_NAMES)


def demo_password() -> str:
    """The shared demo password; an environment variable so a shared demo can use its own."""
    return os.environ.get("DEMO_PASSWORD") or DEFAULT_PASSWORD


def csm_count(customers: int) -> int:
    """About one CSM per 150 customers, at least 4 and at most 40."""
    return int(min(MAX_CSMS, max(4, round(customers / 150))))


def csm_username(index: int) -> str:
    return f"csm{index + 1:02d}"


@dataclass
class Staff:
    csms: list[AbstractBaseUser]
    managers: list[AbstractBaseUser]
    viewer: AbstractBaseUser
    admin: AbstractBaseUser


def _ensure(
    username: str,
    first: str,
    last: str,
    role: str,
    *,
    password_hash: Callable[[], str],
    joined: dt.datetime | None,
    superuser: bool = False,
) -> AbstractBaseUser:
    """get_or_create by username; an existing user keeps its password and profile."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        user = user_model.objects.create(
            username=username,
            first_name=first,
            last_name=last,
            email=f"{username}@churnshield.example",
            is_staff=True,
            is_superuser=superuser,
            password=password_hash(),
            **({"date_joined": joined} if joined else {}),
        )
    elif not user.is_staff or (superuser and not user.is_superuser):
        user.is_staff = True
        user.is_superuser = user.is_superuser or superuser
        user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.add(Group.objects.get(name=role))
    return user


def _shared_hash() -> Callable[[], str]:
    """A hasher that hashes the demo password at most once, and only if a user is created."""
    return cache(lambda: make_password(demo_password()))


def ensure_demo_admin(*, reset_password: bool = False, joined: dt.datetime | None = None) -> AbstractBaseUser:
    """The `demo` superuser in the admin group; its password is only set on creation or on request."""
    user = _ensure(
        ADMIN_USERNAME,
        *vocab.ADMIN_NAME,
        "admin",
        password_hash=_shared_hash(),
        joined=joined,
        superuser=True,
    )
    if reset_password:
        user.set_password(demo_password())
        user.save(update_fields=["password"])
    return user


def ensure_staff(customers: int, *, joined: dt.datetime | None = None) -> Staff:
    """All demo staff for a book of `customers`. One password hash is shared: hashing is slow on purpose."""
    password_hash = _shared_hash()
    csms = [
        _ensure(csm_username(i), first, last, "csm", password_hash=password_hash, joined=joined)
        for i, (first, last) in enumerate(vocab.CSM_NAMES[: csm_count(customers)])
    ]
    managers = [
        _ensure(f"manager{i + 1}", first, last, "manager", password_hash=password_hash, joined=joined)
        for i, (first, last) in enumerate(vocab.MANAGER_NAMES)
    ]
    viewer = _ensure(VIEWER_USERNAME, *vocab.VIEWER_NAME, "viewer", password_hash=password_hash, joined=joined)
    admin = _ensure(
        ADMIN_USERNAME, *vocab.ADMIN_NAME, "admin", password_hash=password_hash, joined=joined, superuser=True
    )
    return Staff(csms=csms, managers=managers, viewer=viewer, admin=admin)
