"""Test settings: the production settings with a private var/ folder and test-only switches.

Worker processes started by the tests use this module too, with the same environment.
"""

from __future__ import annotations

import os
from pathlib import Path

_BASE = Path(__file__).resolve().parent.parent
os.environ.setdefault("TWEEZER_VAR_DIR", str(_BASE / "var" / "test"))
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE", "1")
os.environ.setdefault("TICK_SECONDS", "1")
os.environ.setdefault("JOB_REDISPATCH_SECONDS", "5")
# Status requests answer at once in the test client and live_server (WSGI, a thread each); the
# held-request tests (tests/sdk/test_held_status.py) start an ASGI server with holds on.
os.environ.setdefault("STATUS_HOLD_SECONDS", "0")
os.environ.setdefault("EVENTS_CHANNEL", "tweezer-test:batch:")  # pub/sub ignores Redis' DB numbers

from portal.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
