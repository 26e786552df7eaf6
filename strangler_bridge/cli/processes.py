"""Child processes of ``strangler-bridge`` (API servers, workers) for the dev stack, the demo and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from strangler_bridge.settings import Settings


class Child:
    """A `strangler-bridge` child process with settings in its environment; its output goes to a log file."""

    def __init__(self, args: list[str], settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
        env.update(settings.to_env())
        env.update(extra_env or {})
        env["PYTHONUNBUFFERED"] = "1"
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603  (our own executable and arguments)
            [sys.executable, "-m", "strangler_bridge.cli.main", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and its group (nothing gets to clean up)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def output(self) -> str:
        """What the process has printed so far."""
        return self.log_path.read_text(errors="replace")


def wait_http_ok(url: str, timeout: float = 20.0, child: Child | None = None) -> None:
    """Wait until ``GET url`` answers 200 (failing early if ``child`` exits)."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if child is not None and not child.alive():
            raise RuntimeError(f"{' '.join(child.args)} exited early:\n{child.output()[-2000:]}")
        if time.monotonic() > deadline:
            output = f"; its output ends:\n{child.output()[-2000:]}" if child is not None else ""
            raise TimeoutError(f"{url} did not answer 200 within {timeout} s (last: {last}){output}")
        time.sleep(0.05)
