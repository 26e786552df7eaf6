"""The README's first command: ``strangler-bridge demo`` completes and leaves real files and nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import pytest

from strangler_bridge.cli.redis_server import RedisServer
from tests.support.processes import children_of

pytestmark = pytest.mark.e2e


def test_demo_runs_end_to_end_with_an_embedded_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    out = tmp_path / "demo"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
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
        env={**env, "COLUMNS": "80", "TMPDIR": str(scratch)},
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
    # Piped at 80 columns: every path whole on its line, progress as plain lines without escape codes.
    lines = output.splitlines()
    for path in (wavs[0].parent, pngs[0].parent, segments, videos[0]):
        assert any(line.endswith(f" {path}") for line in lines), output
    assert "\x1b[" not in output
    assert children_of(demo.pid) == []
    assert list(scratch.iterdir()) == []  # no temporary directory (embedded Redis config, log) left behind


def _snapshot(client: Any) -> dict[bytes, bytes]:
    # rq:clean_groups is RQ's global maintenance lock: shared by every deployment's workers, it expires by itself.
    return {key: client.dump(key) for key in client.scan_iter(count=1000) if key != b"rq:clean_groups"}


def test_demo_on_a_configured_redis_leaves_other_data_untouched_and_removes_its_own(tmp_path: Path) -> None:
    import redis

    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    try:
        # A real deployment's data under the default prefix: the jobs flag legacy, a record, a queued RQ job.
        client.hset("sb:flags", "jobs", '{"mode": "legacy", "percent": 0, "fallback": true, "allow": []}')
        client.set("sb:flags:version", 7)
        client.set("sb:job:job_existing", '{"id": "job_existing"}')
        client.rpush("rq:queue:sb-work", "advance-job_existing")
        client.hset("rq:job:advance-job_existing", mapping={"origin": "sb-work", "status": "queued"})
        client.sadd("rq:queues", "rq:queue:sb-work")
        before = _snapshot(client)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "strangler_bridge.cli.main",
                "demo",
                "--out",
                str(tmp_path / "demo"),
                "--workers",
                "1",
                "--script",
                "Shared Redis here. Nothing changes.",
            ],
            env={**env, "STRANGLER_REDIS_URL": server.url},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "done" in demo.stdout
        assert "keys under sb-dev-" in demo.stdout
        assert _snapshot(client) == before
    finally:
        client.close()
        server.close()
