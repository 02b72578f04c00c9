"""Django's ModelBackend, with the user of a session read by one hand-written query (portal.sql)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import backends
from django.contrib.auth.models import User

from portal import sql

_COLUMNS, _FIELDS = sql.columns(User, "u")
_USER_SQL = f"SELECT {_COLUMNS} FROM {User._meta.db_table} u WHERE {sql.column(User, 'id', 'u')} = %s"


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id: Any) -> User | None:
        rows = sql.fetch(_USER_SQL, [sql.param(User, "id", user_id)], _FIELDS)
        if not rows:
            return None
        user: User = sql.instance(User, _FIELDS, rows[0])
        return user if self.user_can_authenticate(user) else None
