"""The product's settings plus a hello-world URL: the floor of scenario 7, through the same middleware."""

from __future__ import annotations

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
