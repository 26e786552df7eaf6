"""The README's first command: ``strangler-bridge demo`` completes and leaves real files and nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_demo_runs_end_to_end_with_an_embedded_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    out = tmp_path / "demo"
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strangler_bridge.cli.main",
            "demo",
            "--out",
            str(out),
            "--workers",
            "1",
            "--script",
            "A short story begins. It ends well.",
        ],
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = demo.communicate(timeout=240)
    assert demo.returncode == 0, output
    assert "done" in output
    artifacts = out / "service-artifacts"
    wavs = sorted(artifacts.glob("tts/*/*.wav"))
    pngs = sorted(artifacts.glob("img/*/*.png"))
    segments = next(artifacts.glob("jobs/*/segments.json"))
    videos = sorted(artifacts.glob("vid/*/video-*.mp4"))
    assert len(wavs) == 2 and len(pngs) == 2 and len(videos) == 1
    with wave.open(str(wavs[0])) as clip:
        assert clip.getnframes() > 0
    assert len(json.loads(segments.read_text())["segments"]) == 2
    assert videos[0].stat().st_size > 1000
    for path in (wavs[0].parent, pngs[0].parent, segments, videos[0]):
        assert str(path) in output.replace("\n", "")
    assert _children_of(demo.pid) == []
