"""``pip install 'strangler-bridge[flask]'`` gives a working Flask half without any service library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strangler_bridge.cli.redis_server import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_flask_extra_installs_without_service_dependencies(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The documented wheel route: build it (no warning from the build backend), then install it with the extra.
    dist = tmp_path / "dist"
    build = subprocess.run(
        [str(python), "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    # The backend's own warnings (pip's about this machine's index configuration are not the package's).
    backend = build.stdout + build.stderr
    assert "BuildBackendWarning" not in backend and "deprecated" not in backend.lower(), backend
    (wheel,) = dist.glob("strangler_bridge-*.whl")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{wheel}[flask]"], capture_output=True, text=True, check=False
    )
    assert install.returncode == 0, install.stdout + install.stderr
    check = (
        "import importlib.util, flask_plugin, strangler_bridge.contracts;"
        "missing = [m for m in ('fastapi', 'rq', 'redis', 'uvicorn', 'rich') if importlib.util.find_spec(m) is None];"
        "print(','.join(missing))"
    )
    result = subprocess.run([str(python), "-c", check], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fastapi,rq,redis,uvicorn,rich"
    # The operator commands work from this install: they load, and report an unreachable service as such.
    url = f"http://127.0.0.1:{free_port()}"
    for command in (
        ["jobs", "list"],
        ["jobs", "watch", "job_x"],
        ["jobs", "download", "job_x", "out"],
        ["flags", "show"],
    ):
        run = subprocess.run(
            [str(venv / "bin" / "strangler-bridge"), *command],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), "STRANGLER_SERVICE_URL": url},
            cwd=tmp_path,
            check=False,
        )
        assert run.returncode == 3, (command, run.stdout, run.stderr)
        assert run.stderr.startswith(f"error: cannot reach the service at {url} ("), run.stderr
