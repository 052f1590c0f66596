"""Sign-in writes: rotating a refresh token.

A refresh token is spent by its first use: exactly one request may rotate it, however many race
(the blacklist row is the claim, and its unique constraint picks the winner). Every token
rotated from one sign-in shares a family (the prefix of its jti). A token used again after it was
rotated means two parties hold it (a thief, or a client replaying a stolen copy), so the whole
family is revoked: the holder of the newest token has to sign in again, and so does the thief.
simplejwt's own TokenRefreshSerializer checks the blacklist and then writes it, so parallel
refreshes with one token each got a new one (3-5 of 8), and a deleted user raised a 500.

The sliding session (an API request whose access cookie has expired renews it from the refresh
cookie) passes a `reuse_grace`: a browser app fires its requests in parallel, all carrying the
same refresh cookie, and only the first can rotate it. A token rotated that recently, whose family
still has a live token (so neither signed out nor revoked), gets a sibling in its family instead
of revoking the family. Past the grace, or once the family is revoked, reuse is theft as before.
"""

import logging
from datetime import timedelta
from typing import Any
from uuid import uuid4

from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

logger = logging.getLogger(__name__)


class TokenRefused(Exception):
    """The refresh token may not be rotated; `code` says why (for the logs: the client is told
    only that the token is not valid)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class FamilyRefreshToken(RefreshToken):
    """A refresh token whose jti is `<family>.<random>`; rotation keeps the family.

    A token issued before families existed has a plain jti, which then serves as its family.
    """

    @property
    def family(self) -> str | None:
        jti = self.payload.get(api_settings.JTI_CLAIM)
        return jti.split(".", 1)[0] if jti else None

    def set_jti(self) -> None:
        self.payload[api_settings.JTI_CLAIM] = f"{self.family or uuid4().hex}.{uuid4().hex}"


class _RotatingRefreshToken(FamilyRefreshToken):
    def check_blacklist(self) -> None:
        """Not here: the rotation claims the token in the same step that checks it."""


def refresh_token_rotate(*, raw: str, reuse_grace: timedelta | None = None) -> dict[str, str]:
    """A new access and refresh token for `raw`, which is spent. Raises TokenRefused.

    With `reuse_grace`, a token spent by a rotation less than that long ago is answered with a
    sibling of its successor (see the module docstring) rather than treated as stolen."""
    try:
        token = _RotatingRefreshToken(raw)  # signature, expiry, type
    except TokenError as exc:
        raise TokenRefused("token_not_valid") from exc
    user = (
        get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: token.get(api_settings.USER_ID_CLAIM)}).first()
    )
    if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
        raise TokenRefused("user_not_found" if user is None else "user_inactive")
    if api_settings.CHECK_REVOKE_TOKEN and token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(
        user.password
    ):
        raise TokenRefused("password_changed")

    with transaction.atomic():
        outstanding, _ = token.outstand()
        try:
            with transaction.atomic():
                BlacklistedToken.objects.create(token=outstanding)
        except IntegrityError:
            reused = not (reuse_grace is not None and _just_rotated(outstanding, token.family, reuse_grace))
            if reused:
                _revoke_family(token.family)
        else:
            reused = False
        if not reused:
            token.set_jti()
            token.set_exp()
            token.set_iat()
            token.outstand()  # so that revoking the family finds it
    if reused:  # raised after commit: the revocation must stay
        logger.warning("refresh token reused after rotation; revoked its family (user %s)", user.pk)
        raise TokenRefused("token_reused")
    if api_settings.UPDATE_LAST_LOGIN:
        update_last_login(None, user)
    return {"access": str(token.access_token), "refresh": str(token)}


def refresh_token_revoke(*, raw: str) -> Any:
    """Sign-out: revoke `raw` and every token of its family (a sliding session may hold
    siblings). Returns the token's user id, or None when `raw` is not a valid token."""
    try:
        token = _RotatingRefreshToken(raw)
    except TokenError:
        return None
    with transaction.atomic():
        outstanding, _ = token.outstand()
        BlacklistedToken.objects.get_or_create(token=outstanding)
        _revoke_family(token.family)
    return token.get(api_settings.USER_ID_CLAIM)


def _just_rotated(outstanding: OutstandingToken, family: str | None, grace: timedelta) -> bool:
    """Spent by a rotation less than `grace` ago: its family still holds a live token."""
    since = timezone.now() - grace
    if not family or not BlacklistedToken.objects.filter(token=outstanding, blacklisted_at__gte=since).exists():
        return False
    return OutstandingToken.objects.filter(
        jti__startswith=f"{family}.", blacklistedtoken__isnull=True, expires_at__gt=timezone.now()
    ).exists()


def _revoke_family(family: str | None) -> None:
    if not family:
        return
    members = OutstandingToken.objects.filter(jti__startswith=f"{family}.").values_list("pk", flat=True)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token_id=pk) for pk in members], ignore_conflicts=True)
