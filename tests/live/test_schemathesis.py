"""F1 (RELIABILITY.md): schemathesis against the served /api/schema, through a real uvicorn.

Every operation, signed in as an admin (the role that reaches every endpoint), with generated
valid and invalid inputs. Pass: 0 server errors, 0 undocumented status codes, 0 responses that
break their documented schema or content type.
"""

import subprocess

import pytest

from churnshield.auth.tokens import issue_tokens
from tests.live.conftest import VENV_BIN

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(asgi_server, make_user, make_customer, tmp_path):
    admin = make_user("admin")
    for _ in range(3):
        make_customer(owner=admin)
    token = issue_tokens(admin)["access"]
    result = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"), "run", f"{asgi_server}/api/schema",
            "--url", asgi_server,
            "-H", f"Authorization: Bearer {token}",
            "-c", CHECKS,
            "-n", "15", "--seed", "7",
            "--phases", "examples,coverage,fuzzing",
            "--request-timeout", "15",
            "--report-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # schemathesis keeps a cache directory in the working directory
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
