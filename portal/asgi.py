"""The site under ASGI (issue 19): held status requests and the portal's event streams wait on
the event loop, not in a thread each; every sync view runs as before, in a thread."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Sync code runs in a thread per request here: connections come from a pool (settings, DB_POOL).
os.environ.setdefault("DB_POOL", "1")
application = get_asgi_application()
