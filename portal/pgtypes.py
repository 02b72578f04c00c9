"""PostgreSQL column types read in C.

Django's psycopg 3 backend reads every `timestamptz` column with its own loader, a Python
subclass of psycopg's pure-Python one (it re-stamps each value with the current time zone):
~3.4 µs a value, where psycopg's C loader (psycopg-binary) takes ~0.2 µs. A page of 50 jobs
has 100 of them, an API page of 100 jobs 400: it was the largest single cost of reading a
page of jobs. Tweezer runs in UTC (settings.TIME_ZONE) and Django sets every connection's
TimeZone to it, so the C loader's answer is already what Django's would be.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from psycopg import adapters
from psycopg.pq import Format


class UtcTimestamptzLoader:
    """psycopg's C `timestamptz` loader, with the `timezone` attribute Django checks on every
    cursor (`DatabaseWrapper.create_cursor`: it re-registers its own loader when that differs)."""

    timezone = datetime.UTC
    format = Format.TEXT

    def __init__(self, oid: int, context: Any = None) -> None:
        c_loader = adapters.get_loader(oid, Format.TEXT)
        assert c_loader is not None
        # The C loader's bound method itself: no Python frame between psycopg and C.
        self.load = c_loader(oid, context).load


def use_c_timestamps(sender: Any, connection: Any, **_: Any) -> None:
    """connection_created receiver: read this connection's timestamptz columns in C."""
    if connection.vendor != "postgresql" or not settings.USE_TZ or settings.TIME_ZONE != "UTC":
        return
    c_loader = adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)
    if c_loader is None or not c_loader.__module__.startswith("psycopg_binary"):
        return  # psycopg without its C extension: Django's loader is as fast as any
    connection.connection.adapters.register_loader("timestamptz", UtcTimestamptzLoader)
