"""API tokens: random, shown once, stored as SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth.models import User
from django.utils import timezone

from portal.models import ApiToken

PREFIX = "twz_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """Returns the row and the plain token, which is never stored."""
    plain = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100] or "token", prefix=plain[:12], token_hash=_digest(plain))
    return token, plain


def user_for_token(plain: str) -> User | None:
    if not plain or len(plain) > 200:
        return None
    digest = _digest(plain)
    token = ApiToken.objects.select_related("user").filter(token_hash=digest, revoked_at=None).first()
    # The lookup is by hash; compare again in constant time so timing says nothing.
    if token is None or not hmac.compare_digest(token.token_hash, digest) or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def revoke(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now())
