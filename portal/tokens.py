"""API tokens: random, shown once, stored as SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from portal import sql
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
    found = _token_and_user(digest)
    if found is None:
        return None
    token_id, token_hash, last_used_at, user = found
    # The lookup is by hash; compare again in constant time so timing says nothing.
    if not hmac.compare_digest(token_hash, digest) or not user.is_active:
        return None
    now = timezone.now()
    if last_used_at is None or (now - last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    return user


# Every API request runs this: written as SQL, because Django took longer to build the joined
# query than the database takes to answer it (bench/RESULTS.md §3).
_TOKEN_FIELDS: list[Any] = [ApiToken._meta.get_field(name) for name in ("id", "token_hash", "last_used_at")]
_USER_COLUMNS, _USER_FIELDS = sql.columns(User, "u")
_TOKEN_SQL = (
    "SELECT "
    + ", ".join(sql.column(ApiToken, f.name, "t") for f in _TOKEN_FIELDS)
    + f", {_USER_COLUMNS} FROM {ApiToken._meta.db_table} t JOIN {User._meta.db_table} u ON u.id = t.user_id"
    + " WHERE t.token_hash = %s AND t.revoked_at IS NULL"
)


def _token_and_user(digest: str) -> tuple[Any, str, datetime | None, User] | None:
    """(token id, stored hash, last use, its user) of a live token, else None."""
    found = sql.fetch(_TOKEN_SQL, [digest], [*_TOKEN_FIELDS, *_USER_FIELDS])
    if not found:
        return None
    token_id, token_hash, last_used_at, *user = found[0]
    return token_id, token_hash, last_used_at, sql.instance(User, _USER_FIELDS, user)


def revoke(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now())
