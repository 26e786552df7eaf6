"""The console script's surface."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from strangler_bridge import __version__
from strangler_bridge.cli.main import cli

pytestmark = pytest.mark.unit


def test_help_lists_every_subcommand() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("api", "worker", "simulate", "demo", "dev", "flags", "jobs", "doctor"):
        assert f"  {name} " in result.output


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "strangler_bridge.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_bad_setting_is_one_line_not_a_traceback() -> None:
    env = {"STRANGLER_HTTP_TIMEOUT_S": "soon", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "strangler_bridge.cli.main", "worker"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "STRANGLER_HTTP_TIMEOUT_S" in result.stderr
    assert "Traceback" not in result.stderr


def test_waiting_for_a_server_that_never_answers_says_what_it_last_saw() -> None:
    from strangler_bridge.cli.processes import wait_http_ok
    from strangler_bridge.cli.redis_server import free_port

    with pytest.raises(TimeoutError, match=r"did not answer 200 within 0.2 s \(last: ConnectError"):
        wait_http_ok(f"http://127.0.0.1:{free_port()}/readyz", timeout=0.2)
