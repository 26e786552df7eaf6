"""Every CLI error is one line naming the problem and the fix, with a documented exit code (never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.e2e

EXPECTED_DOC = '; expected plain text or a job document like {"chunks": [{"text": "..."}]}'


def _run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    result = subprocess.run(
        [sys.executable, "-m", "strangler_bridge.cli.main", *args],
        input=stdin,
        env={**clean, "COLUMNS": "80", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ('{"chunks": 5}', "chunks: Input should be a valid array"),
        ("{}", "chunks: Field required"),
        ("{broken", "Invalid JSON: key must be a string at line 1 column 2"),
        (
            '{"chunks": [{"text": ""}], "voice": ""}',
            "chunks.0.text: String should have at least 1 character (and 1 more)",
        ),
    ],
)
def test_a_bad_job_document_is_a_usage_error(document: str, problem: str) -> None:
    result = _run("jobs", "submit", "-", stdin=document, STRANGLER_SERVICE_URL="http://127.0.0.1:9")
    assert result.returncode == 2
    assert _last_line(result) == f"Error: Invalid value for SCRIPT: {problem}{EXPECTED_DOC}"


def test_an_empty_script_is_a_usage_error() -> None:
    result = _run("jobs", "submit", "-", stdin="  \n", STRANGLER_SERVICE_URL="http://127.0.0.1:9")
    assert (result.returncode, _last_line(result)) == (2, "Error: Invalid value for SCRIPT: the script is empty")


def test_a_malformed_redis_url_is_refused_where_settings_are_read() -> None:
    result = _run("worker", STRANGLER_REDIS_URL="notaurl")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid setting STRANGLER_REDIS_URL: 'notaurl' is not a valid URL "
        "(Input should be a valid URL, relative URL without a base), e.g. redis://127.0.0.1:6379/0"
    )


def test_a_malformed_service_url_is_refused() -> None:
    result = _run("flags", "show", STRANGLER_SERVICE_URL="localhost:8000")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: invalid setting STRANGLER_SERVICE_URL: 'localhost:8000' is not")


def test_an_unreachable_service_is_a_service_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("flags", "show"), ("jobs", "watch", "job_x")):
        result = _run(*args, STRANGLER_SERVICE_URL=url)
        assert result.returncode == 3, args
        assert result.stderr.strip() == (
            f"error: cannot reach the service at {url} (ConnectError [Errno 111] Connection refused): "
            "is it running? Check STRANGLER_SERVICE_URL or --url"
        )


def test_no_service_url_is_a_configuration_error() -> None:
    result = _run("jobs", "watch", "job_x")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: missing required setting(s):\n  STRANGLER_SERVICE_URL: ")


def test_demo_reports_an_unreachable_redis_at_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    result = _run("demo", "--out", str(tmp_path / "demo"), STRANGLER_REDIS_URL=url)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"error: cannot reach Redis at {url} (Error 111 connecting to 127.0.0.1:{port}. "
        "Connection refused.): start it, fix STRANGLER_REDIS_URL, or unset it to use an embedded Redis"
    )


def test_help_documents_the_exit_codes() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "Exit codes: 0 success; 2 usage or configuration error; 3 service or dependency" in " ".join(
        result.stdout.split()
    )


def test_production_worker_demands_provider_settings_but_not_the_api_tokens() -> None:
    result = _run(
        "worker",
        STRANGLER_ENV="production",
        STRANGLER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        STRANGLER_WEBHOOK_SECRET="w" * 32,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: missing required setting(s):\n"
        "  STRANGLER_RUNPOD_ENDPOINT_URL: RunPod endpoint base URL, e.g. https://api.runpod.ai/v2/<endpoint-id>.\n"
        "  STRANGLER_RUNPOD_API_KEY: RunPod API key (sent as a Bearer token).\n"
        "  STRANGLER_RUNWARE_API_KEY: Runware API key.\n"
        "  STRANGLER_VIDEO_URL: Base URL of the Express video service."
    )


def test_a_dev_worker_runs_without_api_tokens(settings: Settings) -> None:
    result = _run(
        "worker",
        "--burst",
        STRANGLER_REDIS_URL=settings.redis_url or "",
        STRANGLER_REDIS_PREFIX=settings.redis_prefix,
        STRANGLER_WEBHOOK_SECRET="w" * 32,
    )
    assert result.returncode == 0, result.stderr
    assert "API_TOKENS" not in result.stderr
