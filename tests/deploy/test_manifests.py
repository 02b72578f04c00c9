"""Issue 20, part 5: the deployment files on paper are checked against the project. Every
compose file and Kubernetes manifest parses; each command they run, port they open, probe
path they call and environment variable they set exists in Tweezer; KEDA scales each
device's worker Deployment with a query that PostgreSQL accepts."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import get_commands
from django.db import connection

from ops.middleware import PATHS
from portal.celery import DEVICE_QUEUES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [ROOT / "compose.yaml", ROOT / "deploy" / "compose.machines.yaml"]
K8S_FILES = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
CODE = ("portal", "ops", "jobs", "backends", "batches")
ENV_PATTERNS = (
    r'env_(?:str|int|bool|list)\(\s*"([A-Z0-9_]+)"',
    r'os\.environ(?:\.get\(|\[|\.setdefault\()\s*"([A-Z0-9_]+)"',
)
EXTERNAL_ENV = {"DJANGO_SETTINGS_MODULE"}  # read by Django itself


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML keeps the last; compose fails)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode) and key.value != "<<"]
        duplicated = {key for key in keys if keys.count(key) > 1}
        assert not duplicated, f"keys given twice at line {node.start_mark.line + 1}: {duplicated}"
        return super().construct_mapping(node, deep=deep)


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_UniqueKeyLoader))  # noqa: S506 - a SafeLoader subclass


def project_env() -> set[str]:
    names = set(EXTERNAL_ENV)
    for folder in CODE:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for pattern in ENV_PATTERNS:
                names.update(re.findall(pattern, text))
    return names


def k8s_documents() -> list[dict[str, Any]]:
    return [doc for path in K8S_FILES for doc in load_all(path.read_text()) if doc]


def compose_services() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in COMPOSE_FILES:
        for name, service in load_all(path.read_text())[0]["services"].items():
            yield path.name, name, service


def is_tweezer(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith("tweezer:")


def pod_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc["metadata"]["name"], doc, container


def dockerfile_command() -> list[str]:
    line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    return list(json.loads(line[4:]))


def check_command(argv: list[str]) -> dict[str, Any]:
    """Fails unless `argv` runs something of this project; returns what it learned (ports, paths)."""
    found: dict[str, Any] = {"ports": set(), "paths": set(), "nodes": set(), "queues": set()}
    if argv[0] == "CMD":
        argv = argv[1:]
    if argv[:2] == ["sh", "-c"]:
        for part in argv[2].split("&&"):
            inner = check_command(shlex.split(part.replace("$HOSTNAME", "host").replace("$$HOSTNAME", "host")))
            for key in found:
                found[key] |= inner[key]
        return found
    if argv[0] == "python" and argv[1] == "manage.py":
        assert argv[2] in get_commands(), f"no management command {argv[2]!r}"
    elif argv[0] == "python" and argv[1] == "-c":
        for port, path in re.findall(r"http://127\.0\.0\.1:(\d+)(/[a-z]*)", argv[2]):
            found["ports"].add(int(port))
            found["paths"].add(path)
        assert found["paths"], f"a python -c health check that calls nothing: {argv}"
    elif argv[0] == "gunicorn":
        module, _, attribute = argv[1].partition(":")  # `portal.asgi:application`: the app in a module
        assert importlib.util.find_spec(module) is not None, f"no module {module}"
        if attribute:
            assert hasattr(importlib.import_module(module), attribute), f"no {attribute} in {module}"
        if "-k" in argv:  # a worker class: `uvicorn.workers.UvicornWorker`
            worker_module, _, worker_class = argv[argv.index("-k") + 1].rpartition(".")
            assert hasattr(importlib.import_module(worker_module), worker_class), f"no worker class {argv}"
        bind = argv[argv.index("-b") + 1]
        found["ports"].add(int(bind.rsplit(":", 1)[1]))
    elif argv[0] == "celery":
        assert argv[1:3] == ["-A", "portal"], argv
        sub = argv[3]
        assert sub in ("worker", "beat", "inspect"), argv
        if sub == "worker":
            queues = argv[argv.index("-Q") + 1].split(",")
            assert set(queues) <= set(DEVICE_QUEUES), f"unknown queues {set(queues) - set(DEVICE_QUEUES)}"
            found["queues"].update(queues)
            found["nodes"].add(argv[argv.index("-n") + 1].split("@")[0])
            assert "--concurrency" in argv
        if sub == "inspect":
            assert argv[4] == "ping"
            found["nodes"].add(argv[argv.index("-d") + 1].split("@")[0])
    else:
        raise AssertionError(f"a command that is not Tweezer's: {argv}")
    return found


def test_every_compose_and_kubernetes_file_parses():
    for path in [*COMPOSE_FILES, *K8S_FILES]:
        assert load_all(path.read_text()), path
    kinds = {doc["kind"] for doc in k8s_documents()}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job", "ScaledObject", "TriggerAuthentication"} <= kinds


def test_compose_commands_ports_health_checks_and_environment_exist_in_the_project():
    known = project_env()
    web_port = next(iter(check_command(dockerfile_command())["ports"]))
    for file, name, service in compose_services():
        if not is_tweezer(service):
            continue
        command = service.get("command") or dockerfile_command()
        learned = check_command(command)
        for mapping in service.get("ports", []):
            assert int(str(mapping).rsplit(":", 1)[1]) == web_port, f"{file}:{name} publishes a port nothing listens on"
        if "healthcheck" in service and not service["healthcheck"].get("disable"):
            health = check_command(service["healthcheck"]["test"])
            assert health["paths"] <= set(PATHS), f"{file}:{name}: {health['paths']}"
            assert health["ports"] <= {web_port}
            assert health["nodes"] <= learned["nodes"], f"{file}:{name} pings another node name"
        unknown = set(service.get("environment", {})) - known
        assert not unknown, f"{file}:{name} sets variables Tweezer never reads: {unknown}"


def test_compose_runs_web_beat_and_every_device_queue():
    for path in COMPOSE_FILES:
        services = load_all(path.read_text())[0]["services"]
        queues: set[str] = set()
        for service in services.values():
            if is_tweezer(service) and service.get("command"):
                queues |= check_command(service["command"])["queues"]
        assert queues == set(DEVICE_QUEUES), path.name
        assert {"web", "beat", "migrate"} <= set(services)
        assert "/readyz" in json.dumps(services["web"]["healthcheck"])


def test_kubernetes_commands_ports_probes_and_environment_exist_in_the_project():
    known = project_env()
    docs = k8s_documents()
    config = {k for doc in docs if doc["kind"] in ("ConfigMap",) for k in doc["data"]}
    secrets = {k for doc in docs if doc["kind"] == "Secret" for k in doc["stringData"]}
    assert not (config | secrets) - known, f"ConfigMap/Secret keys Tweezer never reads: {(config | secrets) - known}"
    for name, _doc, container in pod_containers():
        assert str(container["image"]).startswith("tweezer:"), name
        learned = check_command(container["command"])
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert set(ports.values()) <= learned["ports"], f"{name} declares a port its command does not listen on"
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(kind)
            if probe is None:
                continue
            if "httpGet" in probe:
                assert probe["httpGet"]["path"] in PATHS, f"{name} {kind} calls {probe['httpGet']['path']}"
                assert probe["httpGet"]["port"] in ports, f"{name} {kind} calls an undeclared port"
            else:
                probed = check_command(probe["exec"]["command"])
                assert probed["nodes"] <= learned["nodes"], f"{name} {kind} pings another node name"
        unknown = {e["name"] for e in container.get("env", [])} - known
        assert not unknown, f"{name} sets variables Tweezer never reads: {unknown}"
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            kinds = {"configMapRef": "ConfigMap", "secretRef": "Secret"}
            kind = next(kinds[k] for k in kinds if k in source)
            assert any(d["kind"] == kind and d["metadata"]["name"] == ref["name"] for d in docs), ref
    web = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for service in (d for d in docs if d["kind"] == "Service"):
        selected = [
            d
            for d in web.values()
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no Deployment"
        for port in service["spec"]["ports"]:
            names = {
                p["name"] for d in selected for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]
            }
            assert port["targetPort"] in names


def test_every_variable_the_deployments_set_is_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text()
    used: set[str] = set()
    for _, _, service in compose_services():
        if is_tweezer(service):
            used |= set(service.get("environment", {}))
    for doc in k8s_documents():
        used |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    missing = {name for name in used - EXTERNAL_ENV if f"`{name}`" not in readme}
    assert not missing, f"not in README's Configuration table: {missing}"


def scaled_objects() -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc["kind"] == "ScaledObject"]


def test_one_worker_deployment_per_device_queue_each_scaled_by_keda_on_postgresql():
    from backends.devices import catalogue

    devices = {row["name"] for row in catalogue()}
    consumers: dict[str, list[str]] = {}
    for name, _doc, container in pod_containers():
        for queue in check_command(container["command"])["queues"]:
            consumers.setdefault(queue, []).append(name)
    assert set(consumers) == set(DEVICE_QUEUES) and all(len(v) == 1 for v in consumers.values()), consumers
    deployments = {d["metadata"]["name"] for d in k8s_documents() if d["kind"] == "Deployment"}
    scaled = {}
    for obj in scaled_objects():
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] in ("postgresql", "prometheus"), "not a Redis list length: prefetch hides work"
        named = re.search(r"d\.name = '([A-Z_]+)'", trigger["metadata"]["query"])
        assert named and named.group(1) in devices
        scaled[named.group(1)] = obj["spec"]["scaleTargetRef"]["name"]
    assert set(scaled) == devices
    for device, deployment in scaled.items():
        assert consumers[f"device.{device}"] == [deployment]
    auth = next(d for d in k8s_documents() if d["kind"] == "TriggerAuthentication")
    secrets = {k for d in k8s_documents() if d["kind"] == "Secret" for k in d["stringData"]}
    assert {ref["key"] for ref in auth["spec"]["secretTargetRef"]} <= secrets


@pytest.mark.postgres
def test_each_keda_query_runs_on_the_schema_and_counts_runnable_batches(member, devices):
    from batches import services
    from tests.sequences import job, seed_mappable_sequence

    for _ in range(3):
        services.create_batch(
            member.project,
            member.user,
            sequence_builder=seed_mappable_sequence(),
            jobs=[job(runs=10, qubits={"q0": 1})],
            device_type="EMU_FREE",
        )
    answers = {}
    for obj in scaled_objects():
        query = obj["spec"]["triggers"][0]["metadata"]["query"]
        with connection.cursor() as cursor:
            cursor.execute(query)
            rows = cursor.fetchall()
        answers[re.search(r"d\.name = '([A-Z_]+)'", query).group(1)] = rows  # type: ignore[union-attr]
    assert answers["EMU_FREE"] == [(min(3, devices["EMU_FREE"].slots),)]
    assert answers["FRESNEL"] == [(0,)]
