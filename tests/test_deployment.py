"""Every deployed process runs with production settings.

The entry points default to `churnshield.settings.local` (DEBUG on) for `make run`, so a deployment
file that does not name the production settings serves Django's debug pages. Each command in a
deployment file is run here by a real POSIX shell whose PATH holds only stubs recording the
settings module they were started with: `a && b` with the variable set before `a` alone fails.
A deployment file of a kind this test cannot read fails too, until it is taught to.
"""

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = "churnshield.settings.production"
SETTING = "DJANGO_SETTINGS_MODULE"
# Programs a deployment may start; anything else a command runs is "not found" and fails it.
STUBS = ("python", "python3", "uvicorn", "gunicorn", "daphne", "celery", "django-admin")
DEPLOYMENT_FILES = (
    "Procfile*", "app.json", "render.yaml", "railway.json", "railway.toml", "fly.toml",
    "Dockerfile*", "*.Dockerfile", "Containerfile", "docker-compose*.y*ml", "compose*.y*ml",
    "deploy/railway/*.json",  # Railway: one config file per service (worker, beat), named in its settings
)  # fmt: skip


def run_command(command: str, env: dict[str, str], tmp_path: Path) -> list[tuple[str, str]]:
    """Run `command` as a platform would (sh -c, with `env`); the programs it started, each with
    the settings module it saw."""
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir(exist_ok=True)
    calls.write_text("")
    for name in STUBS:
        stub = bindir / name
        stub.write_text(f'#!/bin/sh\nprintf "%s %s\\n" "${{0##*/}}" "${{{SETTING}:-unset}}" >> "{calls}"\n')
        stub.chmod(0o755)
    for name, target in (("env", "/usr/bin/env"), ("sh", "/bin/sh")):
        if not (bindir / name).exists():
            (bindir / name).symlink_to(target)
    result = subprocess.run(
        ["/bin/sh", "-c", command], env={"PATH": str(bindir), "PORT": "8000", **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{command!r}: {result.stderr}"
    started = [tuple(line.split(" ", 1)) for line in calls.read_text().splitlines()]
    assert started, f"{command!r} starts none of {STUBS}"
    return started


def procfile_processes(text: str) -> dict[str, tuple[str, dict[str, str]]]:
    processes = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = (command.strip(), {})
    return processes


def dockerfile_env(text: str) -> dict[str, str]:
    """The ENV a Dockerfile leaves its containers (last stage, later instructions win)."""
    env: dict[str, str] = {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            env = {}
        elif words and words[0].upper() == "ENV":
            pairs = words[1:]
            if len(pairs) >= 2 and "=" not in pairs[0]:  # legacy `ENV KEY value`
                env[pairs[0]] = " ".join(pairs[1:])
            else:
                env |= dict(pair.split("=", 1) for pair in pairs)
    return {key: value.strip("\"'") for key, value in env.items()}


def compose_environment(environment: dict | list | None) -> dict[str, str]:
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {key: str(value) for key, value in (environment or {}).items()}


def deployment_processes(path: Path) -> dict[str, tuple[str | None, dict[str, str]]]:
    """Each process a deployment file starts: (its command or None if the image's own, its env)."""
    name, text = path.name, path.read_text()
    if name.startswith("Procfile"):
        return procfile_processes(text)
    if name == "app.json":  # Heroku: the Procfile runs; config vars and scripts come from here
        data = json.loads(text)
        env = {k: v["value"] if isinstance(v, dict) else v for k, v in data.get("env", {}).items()}
        env = {k: v for k, v in env.items() if isinstance(v, str)}
        return {f"script {key}": (command, env) for key, command in data.get("scripts", {}).items()} or {
            "config": (None, env)
        }
    if name == "render.yaml":
        processes = {}
        for service in yaml.safe_load(text).get("services", []):
            if service.get("type") in ("keyvalue", "redis"):  # Render's managed Redis, not our process
                continue
            env = {v["key"]: str(v["value"]) for v in service.get("envVars", []) if "value" in v}
            for key in ("preDeployCommand", "startCommand", "dockerCommand"):
                if service.get(key):
                    processes[f"{service['name']} {key}"] = (service[key], env)
            processes.setdefault(service["name"], (None, env))
        return processes
    if name in ("railway.json", "railway.toml") or path.parent.name == "railway":
        data = json.loads(text) if name.endswith(".json") else tomllib.loads(text)
        deploy = data.get("deploy", {})
        commands = [deploy.get("startCommand"), deploy.get("preDeployCommand")]
        flat = [c for command in commands for c in (command if isinstance(command, list) else [command]) if c]
        return {f"railway {i}": (command, {}) for i, command in enumerate(flat)} or {"railway": (None, {})}
    if name == "fly.toml":
        data = tomllib.loads(text)
        env = {k: str(v) for k, v in data.get("env", {}).items()}
        commands = dict(data.get("processes", {}))
        if data.get("deploy", {}).get("release_command"):
            commands["release"] = data["deploy"]["release_command"]
        return {key: (command, env) for key, command in commands.items()} or {"app": (None, env)}
    if "ockerfile" in name or name == "Containerfile":
        return {"image": (None, dockerfile_env(text))}
    if name.startswith(("docker-compose", "compose")):
        processes = {}
        for service_name, service in (yaml.safe_load(text).get("services") or {}).items():
            ours = "build" in service or "churnshield" in str(service.get("image", ""))
            if ours:
                command = service.get("command")
                command = " ".join(command) if isinstance(command, list) else command
                processes[service_name] = (command, compose_environment(service.get("environment")))
        return processes
    raise AssertionError(f"{path}: a deployment file this test cannot read yet; teach it")


def settings_of_processes(path: Path, tmp_path: Path) -> dict[str, set[str]]:
    """The settings module every program of every process of `path` starts with."""
    seen = {}
    for process, (command, env) in deployment_processes(path).items():
        if command is None:  # the image's own command: only the environment the file sets counts
            seen[process] = {env.get(SETTING, "unset")}
        else:
            seen[process] = {settings for _, settings in run_command(command, env, tmp_path)}
    return seen


def deployment_files() -> list[Path]:
    found = {path for pattern in DEPLOYMENT_FILES for path in ROOT.glob(pattern) if path.is_file()}
    return sorted(found)


def test_the_procfile_is_a_deployment_file_and_runs_every_process():
    assert ROOT / "Procfile" in deployment_files()
    assert set(procfile_processes((ROOT / "Procfile").read_text())) == {"release", "web", "worker", "beat"}


@pytest.mark.parametrize("path", deployment_files(), ids=lambda path: path.name)
def test_every_deployed_process_runs_production_settings(path, tmp_path):
    seen = settings_of_processes(path, tmp_path)
    assert seen and {process: {PRODUCTION} for process in seen} == seen


# The check itself: deployment files that forget the setting (or set it for part of a command).
BAD = {
    "Procfile": "release: DJANGO_SETTINGS_MODULE=churnshield.settings.production python manage.py migrate"
    " && python manage.py sync_schedules\nweb: uvicorn churnshield.asgi:application --port ${PORT:-8000}\n",
    "Dockerfile": "FROM python:3.13-slim\nENV PYTHONUNBUFFERED=1\nCMD uvicorn churnshield.asgi:application\n",
    "docker-compose.yml": "services:\n  web:\n    build: .\n    environment:\n"
    "      DJANGO_SETTINGS_MODULE: churnshield.settings.local\n  redis:\n    image: redis:7\n",
    "render.yaml": "services:\n  - type: web\n    name: api\n    startCommand: uvicorn churnshield.asgi:application\n",
    "app.json": '{"scripts": {"postdeploy": "python manage.py seed_demo"}}',
    "railway.toml": '[deploy]\nstartCommand = "celery -A churnshield worker"\n',
    "fly.toml": '[processes]\nweb = "uvicorn churnshield.asgi:application"\n',
    "Procfile.dev": "web: bin/start\n",  # a program the check does not know: fails, never passes silently
}
GOOD = {
    "Procfile": "release: export DJANGO_SETTINGS_MODULE=churnshield.settings.production &&"
    " python manage.py migrate && python manage.py sync_schedules\n",
    "Dockerfile": "FROM python:3.13-slim AS build\nFROM python:3.13-slim\n"
    "ENV DJANGO_SETTINGS_MODULE=churnshield.settings.production \\\n    PYTHONUNBUFFERED=1\n",
    "docker-compose.yml": "services:\n  worker:\n    build: .\n    command: [celery, -A, churnshield, worker]\n"
    "    environment:\n      - DJANGO_SETTINGS_MODULE=churnshield.settings.production\n",
    "render.yaml": "services:\n  - type: web\n    name: api\n    startCommand: uvicorn churnshield.asgi:application\n"
    "    envVars:\n      - key: DJANGO_SETTINGS_MODULE\n        value: churnshield.settings.production\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_deployment_file_without_production_settings_is_caught(name, tmp_path):
    path = tmp_path / "repo" / name
    path.parent.mkdir()
    path.write_text(BAD[name])
    with pytest.raises(AssertionError):
        seen = settings_of_processes(path, tmp_path)
        assert {process: {PRODUCTION} for process in seen} == seen


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_deployment_file_with_production_settings_passes(name, tmp_path):
    path = tmp_path / "repo" / name
    path.parent.mkdir()
    path.write_text(GOOD[name])
    seen = settings_of_processes(path, tmp_path)
    assert seen and set(map(frozenset, seen.values())) == {frozenset({PRODUCTION})}


def test_a_render_docker_command_is_run_like_any_other(tmp_path):
    """The service's environment names production, but its command overrides it."""
    path = tmp_path / "repo" / "render.yaml"
    path.parent.mkdir()
    path.write_text(
        "services:\n  - type: worker\n    name: worker\n    runtime: docker\n"
        '    dockerCommand: sh -c "DJANGO_SETTINGS_MODULE=churnshield.settings.local celery -A churnshield worker"\n'
        f"    envVars:\n      - key: {SETTING}\n        value: {PRODUCTION}\n"
    )
    seen = settings_of_processes(path, tmp_path)
    assert seen == {"worker dockerCommand": {"churnshield.settings.local"}, "worker": {PRODUCTION}}
