"""``strangler-bridge jobs submit|watch|retry|cancel`` against the real stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings
from tests.support.stack import follow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[DevStack]:
    base = settings.model_copy(update={"reconcile_after_s": 1.5, "reconcile_interval_s": 0.2, "provider_attempts": 1})
    with DevStack(
        base,
        runpod={"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05},
        runware={"latency_s": 0.05, "image_max_side": 64},
        log_dir=tmp_path / "stack",
    ) as running:
        yield running


def _cli(stack: DevStack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    env.update({"STRANGLER_SERVICE_URL": stack.api_url, "STRANGLER_SERVICE_TOKEN": stack.token, "COLUMNS": "80"})
    return subprocess.run(
        [sys.executable, "-m", "strangler_bridge.cli.main", "jobs", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_submit_shows_progress_per_step_until_completed(stack: DevStack) -> None:
    result = _cli(stack, "submit", "-", "--style", "ink", stdin="One line. Two lines. Three lines.")
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("tts", "segments", "imagegen", "video"):
        assert step in result.stdout
    assert "completed" in result.stdout
    assert "submitted job job_" in result.stdout
    # Not a terminal: one plain line per change, each step with its count, state and age (no bars cut to fit).
    lines = result.stdout.splitlines()
    for step, count in (("tts", "3/3"), ("segments", "1/1"), ("imagegen", "3/3"), ("video", "1/1")):
        finished = [line.split() for line in lines if line.startswith(f"{step} ") and "completed" in line]
        assert finished, result.stdout
        assert finished[-1][1:3] == [count, "completed"]
        assert re.fullmatch(r"\d+\.\ds|\d+m\d\ds", finished[-1][3])
    assert "\x1b[" not in result.stdout
    job_id = result.stdout.split("submitted job ")[1].split()[0]

    listed = _cli(stack, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:3] == [job_id, "completed", "4/4"]

    out = stack.log_dir.parent / "download"
    downloaded = _cli(stack, "download", job_id, str(out))
    assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
    assert sorted(p.name for p in (out / "audio").iterdir()) == [f"chunk_{i:04d}.wav" for i in range(3)]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"image_{i:04d}.png" for i in range(3)]
    assert len(json.loads((out / "segments.json").read_text())["segments"]) == 3
    assert (out / "video.mp4").read_bytes()[4:8] == b"ftyp"
    assert f"video          {out / 'video.mp4'}" in downloaded.stdout.splitlines()


def test_failed_job_is_retried_and_watched_from_the_cli(stack: DevStack) -> None:
    stack.set_knobs("runware", failure_rate=1.0)
    failed = _cli(stack, "submit", "-", stdin="Only one sentence here.")
    assert failed.returncode == 4
    assert "failed" in failed.stdout and "imagegen" in failed.stdout
    job_id = failed.stdout.split("submitted job ")[1].split()[0]
    imagegen = [line for line in failed.stdout.splitlines() if line.startswith("imagegen") and "failed" in line]
    assert imagegen and "  error: " in imagegen[-1], failed.stdout  # the step's reason, in full
    partial = _cli(stack, "download", job_id, str(stack.log_dir.parent / "partial"))
    assert partial.returncode == 4
    assert f"job {job_id} is failed: only the finished steps' files were downloaded" in partial.stdout
    assert (stack.log_dir.parent / "partial" / "segments.json").is_file()
    stack.set_knobs("runware", failure_rate=0.0)
    retried = _cli(stack, "retry", job_id)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "resumed at imagegen" in retried.stdout


def test_cancel_from_the_cli(stack: DevStack) -> None:
    stack.set_knobs("runware", latency_s=5.0)
    submitted = _cli(stack, "submit", "--no-watch", "-", stdin="Slow images ahead.")
    job_id = submitted.stdout.split("submitted job ")[1].split()[0]
    wait_for(lambda: stack.counters("runware")["in_flight"] >= 1, timeout=60, what="an image in flight")
    cancelled = _cli(stack, "cancel", job_id)
    assert cancelled.returncode == 0
    assert json.loads(cancelled.stdout) == {"id": job_id, "status": "cancelled"}
    with stack.client() as client:
        assert follow(client, f"/jobs/{job_id}")["status"] == "cancelled"
    watched = _cli(stack, "watch", job_id)
    assert watched.returncode == 4 and "cancelled" in watched.stdout
