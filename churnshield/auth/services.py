"""Sign-in writes: rotating a refresh token.

A refresh token is spent by its first use: exactly one request may rotate it, however many race
(the blacklist row is the claim, and its unique constraint picks the winner). Every token
rotated from one sign-in shares a family (the prefix of its jti). A token used again after it was
rotated means two parties hold it (a thief, or a client replaying a stolen copy), so the whole
family is revoked: the holder of the newest token has to sign in again, and so does the thief.
simplejwt's own TokenRefreshSerializer checks the blacklist and then writes it, so parallel
refreshes with one token each got a new one (3-5 of 8), and a deleted user raised a 500.
"""

import logging
from uuid import uuid4

from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.db import IntegrityError, transaction
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


def refresh_token_rotate(*, raw: str) -> dict[str, str]:
    """A new access and refresh token for `raw`, which is spent. Raises TokenRefused."""
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
            reused = True
            _revoke_family(token.family)
        else:
            reused = False
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


def _revoke_family(family: str | None) -> None:
    if not family:
        return
    members = OutstandingToken.objects.filter(jti__startswith=f"{family}.").values_list("pk", flat=True)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token_id=pk) for pk in members], ignore_conflicts=True)
