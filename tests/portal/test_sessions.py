"""portal.sessions and portal.auth read a session and its user by SQL, as Django's ORM would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.backends import ModelBackend as DjangosBackend
from django.contrib.sessions.backends.db import SessionStore as DjangosStore
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from portal.auth import ModelBackend
from portal.sessions import SessionStore

pytestmark = pytest.mark.django_db


def _fields(obj):
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_a_session_reads_back_as_djangos_store_reads_it_and_an_expired_one_not_at_all():
    store = SessionStore()
    store["answer"], store["text"] = 42, "τ"
    store.create()
    key = store.session_key
    assert SessionStore(key).load() == DjangosStore(key).load() == {"answer": 42, "text": "τ"}
    assert _fields(SessionStore(key)._get_session_from_db()) == _fields(Session.objects.get(pk=key))
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    expired = SessionStore(key)
    assert expired.load() == {} and expired.session_key is None
    unknown = SessionStore("x" * 32)
    assert unknown.load() == {} and unknown.session_key is None


def test_a_sessions_user_reads_back_as_djangos_backend_reads_it_and_an_inactive_one_is_nobody(member):
    user = member.user
    assert _fields(ModelBackend().get_user(user.pk)) == _fields(DjangosBackend().get_user(user.pk))
    stored = ModelBackend().get_user(str(user.pk))  # the id as a session stores it
    assert stored is not None and stored.username == user.username
    assert ModelBackend().get_user(10**9) is None
    user.is_active = False
    user.save()
    assert ModelBackend().get_user(user.pk) is None is DjangosBackend().get_user(user.pk)


def test_logging_in_and_out_goes_through_the_sql_session_and_user(client, member):
    page = reverse("batches:list")
    assert client.get(page).status_code == 302  # to the login page
    client.force_login(member.user)
    assert client.get(page).status_code == 200
    client.logout()
    assert client.get(page).status_code == 302
