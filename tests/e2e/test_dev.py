"""``strangler-bridge dev`` stays up, prints working environment lines, runs a job, and stops everything on Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.processes import children_of
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_dev_serves_a_job_from_the_printed_environment_until_ctrl_c(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    dev = subprocess.Popen(
        [sys.executable, "-m", "strangler_bridge.cli.main", "dev", "--port", "0", "--workers", "1", "--dir", "stack"],
        cwd=tmp_path,
        env={**clean, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(line) for line in dev.stdout or []], daemon=True)
    reader.start()

    def ready() -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(line.startswith("Ready.") for line in seen) or dev.poll() is not None

    try:
        wait_for(ready, timeout=120, what="dev to say it is ready")
        assert dev.poll() is None, "".join(seen)
        exports = dict(
            line.removeprefix("export ").strip().split("=", 1) for line in seen if line.startswith("export ")
        )
        assert set(exports) == {"STRANGLER_SERVICE_URL", "STRANGLER_SERVICE_TOKEN"}
        assert any(
            line.split()[:1] == ["files"] and line.split()[1] == str(tmp_path / "stack" / "artifacts") for line in seen
        )

        job = subprocess.run(
            [sys.executable, "-m", "strangler_bridge.cli.main", "jobs", "submit", "-"],
            input="A dev stack stays up. It runs this job.",
            env={**clean, **exports},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert job.returncode == 0, job.stdout + job.stderr
        assert "completed" in job.stdout
        assert sorted((tmp_path / "stack" / "artifacts").glob("vid/*/video*.mp4"))

        started = children_of(dev.pid)
        assert len(started) >= 2  # the API and the worker
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait(10)
    reader.join(10)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert dev.returncode == 0, output
    assert output.rstrip().endswith("Everything `dev` started has been stopped.")
    assert "Traceback" not in output
    assert [pid for pid in started if _running(pid)] == []
    assert list(scratch.iterdir()) == []


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
