"""/healthz says the process answers; /readyz says whether it can serve: database, broker,
results storage reachable and migrations applied. Both answer a probe that calls by IP."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from jobs.storage import DatabaseStorage
from ops import health
from tests.s3 import Bucket, free_port

PROBE: dict[str, Any] = {"HTTP_HOST": "10.1.2.3:8000"}  # a kubelet calls the pod's IP: not in ALLOWED_HOSTS


def test_healthz_answers_without_touching_the_database():
    response = Client(**PROBE).get("/healthz")
    assert response.status_code == 200 and response.content == b"ok\n"


@pytest.mark.django_db
def test_readyz_is_ok_when_database_broker_results_storage_and_migrations_are(monkeypatch):
    monkeypatch.setattr(health, "_MIGRATED", set())
    response = Client(**PROBE).get("/readyz")
    assert response.status_code == 200, response.content
    lines = response.content.decode().splitlines()
    assert [line.split("(")[0] for line in lines] == ["Database", "Broker", "ResultsStorage", "Migrations"]
    assert all(line.endswith(": OK") for line in lines)
    assert Client(**PROBE).get("/readyz", HTTP_ACCEPT="application/json").json()["Broker()"] == "OK"


@pytest.mark.django_db
def test_readyz_fails_while_the_broker_is_unreachable(monkeypatch):
    from portal.celery import app

    def unreachable() -> None:
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(app, "connection_for_write", unreachable)
    response = Client(**PROBE).get("/readyz")
    assert response.status_code == 503
    assert "Broker(): Unavailable: broker unreachable (ConnectionRefusedError)" in response.content.decode()


@pytest.mark.django_db
def test_readyz_fails_while_the_results_storage_is_unreachable(monkeypatch):
    def broken(self: DatabaseStorage, name: str) -> bool:
        raise OSError("gone")

    monkeypatch.setattr(DatabaseStorage, "exists", broken)
    response = Client(**PROBE).get("/readyz")
    assert response.status_code == 503 and "results storage unreachable" in response.content.decode()


@pytest.mark.django_db
def test_readyz_fails_until_the_migrations_are_applied(monkeypatch):
    monkeypatch.setattr(health, "_MIGRATED", set())
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("ops", "9999_future")])
    response = Client(**PROBE).get("/readyz")
    assert response.status_code == 503 and "1 migrations not applied" in response.content.decode()


def test_readyz_answers_a_plain_get_that_accepts_anything_in_text(db, client):
    """A probe or `curl` sends `Accept: */*`: it gets the checks as text, not an empty page."""
    response = client.get("/readyz", HTTP_ACCEPT="*/*")
    assert response.status_code in (200, 503)
    assert response["Content-Type"].startswith("text/plain")
    assert "Database" in response.content.decode()


@pytest.mark.django_db
def test_readyz_finds_an_s3_results_bucket_reachable(monkeypatch, s3_bucket: Bucket):
    monkeypatch.setattr(health, "_MIGRATED", set())
    response = Client(**PROBE).get("/readyz")
    assert response.status_code == 200, response.content
    assert "ResultsStorage(): OK" in response.content.decode()
    assert s3_bucket.keys() == [], "the probe writes nothing"


@pytest.mark.django_db
def test_readyz_fails_while_the_s3_results_bucket_does_not_exist(settings, s3_bucket: Bucket):
    """A missing bucket answers a key lookup with the 404 of a missing key: the bucket itself is asked."""
    results = copy.deepcopy(settings.STORAGES["results"])
    results["OPTIONS"]["bucket_name"] = f"{s3_bucket.name}-gone"
    settings.STORAGES = {**settings.STORAGES, "results": results}
    response = Client(**PROBE).get("/readyz")
    assert response.status_code == 503
    assert "ResultsStorage(): Unavailable: results storage unreachable (ClientError 404)" in response.content.decode()


@pytest.mark.django_db
def test_readyz_fails_while_the_s3_endpoint_does_not_answer(settings, s3_bucket: Bucket):
    results = copy.deepcopy(settings.STORAGES["results"])
    results["OPTIONS"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.STORAGES = {**settings.STORAGES, "results": results}
    response = Client(**PROBE).get("/readyz")
    assert response.status_code == 503
    assert "results storage unreachable (EndpointConnectionError)" in response.content.decode()
