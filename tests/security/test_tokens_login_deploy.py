"""Secrets at rest, constant-time checks, login throttling, production settings and the CSP."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from portal import tokens
from portal.models import ApiToken

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent.parent


def test_api_tokens_are_stored_only_as_sha256(member):
    row = ApiToken.objects.get(user=member.user)
    stored = " ".join(str(getattr(row, f.attname)) for f in ApiToken._meta.fields)
    assert member.token not in stored
    assert row.token_hash == hashlib.sha256(member.token.encode()).hexdigest()
    assert len(row.prefix) <= 12 and member.token.startswith(row.prefix)


def test_token_check_compares_digests_in_constant_time(member, monkeypatch):
    compared: list[tuple[str, str]] = []
    real = tokens.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {member.token}")
    assert client.get("/account/api/v1/projects").status_code == 200
    assert compared and all(len(a) == len(b) == 64 for a, b in compared)


def test_a_revoked_token_is_refused(member):
    tokens.revoke(ApiToken.objects.get(user=member.user))
    response = Client(HTTP_AUTHORIZATION=f"Bearer {member.token}").get("/account/api/v1/projects")
    assert response.status_code == 401


def test_a_token_gives_its_user_exactly_as_the_orm_reads_it(member):
    """The token lookup is SQL: every field of the user comes back converted (bools, aware times)."""
    user = tokens.user_for_token(member.token)
    expected = User.objects.get(pk=member.user.pk)
    assert user is not None and user.pk == expected.pk
    assert {f.attname: getattr(user, f.attname) for f in User._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in User._meta.concrete_fields
    }
    assert user.is_active is True and user.date_joined.tzinfo is not None
    assert tokens.user_for_token(member.token + "x") is None and tokens.user_for_token("") is None


def test_an_inactive_users_token_is_refused_and_last_use_is_written_once_a_minute(member):
    row = ApiToken.objects.get(user=member.user)
    assert row.last_used_at is None
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert tokens.user_for_token(member.token) is not None
    first = ApiToken.objects.get(pk=row.pk).last_used_at
    assert first == start
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        tokens.user_for_token(member.token)
    assert ApiToken.objects.get(pk=row.pk).last_used_at == first
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        tokens.user_for_token(member.token)
    assert ApiToken.objects.get(pk=row.pk).last_used_at == start + timedelta(seconds=61)
    User.objects.filter(pk=member.user.pk).update(is_active=False)
    assert tokens.user_for_token(member.token) is None
    assert Client(HTTP_AUTHORIZATION=f"Bearer {member.token}").get("/account/api/v1/projects").status_code == 401


def test_login_is_locked_after_the_axes_failure_limit(member):
    client = Client(REMOTE_ADDR="203.0.113.7")
    username = member.user.username
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post("/login/", {"username": username, "password": "wrong-guess"})
        assert response.status_code in (200, 403, 429)
    locked = client.post("/login/", {"username": username, "password": "correct-horse-battery"})
    assert locked.status_code in (403, 429), locked.status_code
    assert "_auth_user_id" not in client.session
    # Another address is not locked out by someone else's guesses.
    other = Client(REMOTE_ADDR="198.51.100.9")
    assert other.post("/login/", {"username": username, "password": "correct-horse-battery"}).status_code == 302
    print(f"\nFIGURE login lockout after {settings.AXES_FAILURE_LIMIT} failures: status {locked.status_code}")


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "0",
        "HTTPS": "1",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "tweezer.example.org",
        "TWEEZER_VAR_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_URL", None)  # the check needs no database; keep it off the shared one
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests' conftest, never in production
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _inline_script_or_handler(html: str) -> list[str]:
    # Data islands (`json_script`, type="application/json") are not executed: they are fine.
    scripts = re.finditer(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>\s*\S", html)
    problems = [m.group(0)[:80] for m in scripts]
    problems += [m.group(0) for m in re.finditer(r"<[^>]+\s(on[a-z]+)\s*=", html)]
    problems += [m.group(0) for m in re.finditer(r"\bhx-on[:-][\w:-]*\s*=", html)]
    return problems


def test_portal_pages_send_a_csp_allowing_only_our_own_scripts_and_have_no_inline_script(member, devices):
    anonymous, client = Client(), Client()
    client.force_login(member.user)
    pages = [(anonymous, "/login/")]
    pages += [(client, url) for url in ("/batches/", "/batches/new/", "/credits/", "/tokens/", "/devices/")]
    for browser, url in pages:
        response = browser.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
        assert directives["script-src"] == ["'self'"], policy
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
        assert _inline_script_or_handler(response.content.decode()) == [], url


def test_an_address_trying_many_user_names_is_locked_after_the_failure_limit(member):
    """Issue 17 point 8: throttled per address too, not only per user name + address."""
    client = Client(REMOTE_ADDR="203.0.113.8")
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": f"guess-{attempt}", "password": "wrong-guess"})
    locked = client.post("/login/", {"username": member.user.username, "password": "correct-horse-battery"})
    assert locked.status_code in (403, 429), locked.status_code
    assert "_auth_user_id" not in client.session
    other = Client(REMOTE_ADDR="198.51.100.10")
    answer = other.post("/login/", {"username": member.user.username, "password": "correct-horse-battery"})
    assert answer.status_code == 302
