"""Portal sessions in the database, read by one hand-written query (portal.sql).

Every page of a logged-in user reads its session, then its user (portal.auth): through the
ORM those two lookups were a fifth of a batch page's time, most of it building the queries.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.utils import timezone

from portal import sql

_COLUMNS, _FIELDS = sql.columns(Session, "s")
_SESSION_SQL = (
    f"SELECT {_COLUMNS} FROM {Session._meta.db_table} s"
    f" WHERE {sql.column(Session, 'session_key', 's')} = %s AND {sql.column(Session, 'expire_date', 's')} > %s"
)


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Any:
        """The unexpired session row, or None (and no key), as Django's own store answers."""
        now = sql.param(Session, "expire_date", timezone.now())
        rows = sql.fetch(_SESSION_SQL, [self.session_key, now], _FIELDS) if self.session_key else []
        if not rows:
            self._session_key = None
            return None
        return sql.instance(Session, _FIELDS, rows[0])
