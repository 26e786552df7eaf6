"""The service against the runpod SDK's own local test API (``python handler.py --rp_serve_api``), as RunPod's
users test a handler before deploying it: the example handler of docs/simulators/runpod.md runs in a child
process, and TTS batches and whole jobs complete through it with nothing configured but the endpoint URL.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strangler_bridge.cli.processes import wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.doctor import check_runpod
from strangler_bridge.settings import Settings
from tests.support.stack import StackFactory, create, follow, tts_body

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("runpod") is None,
        reason="the official runpod SDK is not installed (pip install runpod, part of the dev extra)",
    ),
]

EXAMPLE_HANDLER = Path(__file__).resolve().parents[2] / "examples" / "runpod_worker" / "handler.py"
NOTICE = "is the runpod SDK's local test API"


@pytest.fixture(scope="module")
def sdk_test_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example handler served by the runpod SDK's test API on a free loopback port."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("sdk-test-api")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "STRANGLER_"))}
    args = [str(EXAMPLE_HANDLER), "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    with (workdir / "output.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/openapi.json", timeout=60)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


def _notices(stack: Any) -> int:
    return sum(worker.output().count(NOTICE) for worker in stack.workers)


def test_a_tts_batch_completes_through_the_sdk_test_api_without_waiting_for_webhooks(
    make_stack: StackFactory, sdk_test_api: str
) -> None:
    # A webhook lease far longer than the test: only polling at once can complete the batch in time.
    stack = make_stack(runpod_url=sdk_test_api, tts_group_size=2, reconcile_after_s=600)
    created = create(stack, "/tts/batch", tts_body(5))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}", timeout=60)
        assert status["status"] == "completed", status
        assert status["progress"] == {"done": 5, "failed": 0, "total": 5}
        for chunk in status["chunks"]:
            audio = client.get(chunk["audio_url"])
            assert audio.status_code == 200
            assert _wav_seconds(audio.content) == pytest.approx(chunk["duration_s"], abs=1e-3)
    assert _notices(stack) == 1  # logged once, although three jobs were submitted
    assert stack.counters("runpod")["jobs_received_total"] == 0  # nothing went to our simulator


def test_a_whole_job_completes_with_tts_on_the_sdk_test_api(make_stack: StackFactory, sdk_test_api: str) -> None:
    stack = make_stack(runpod_url=sdk_test_api, tts_group_size=3, reconcile_after_s=600)
    body = {
        "chunks": [{"text": f"Sentence number {i} of the story."} for i in range(4)],
        "voice": "narrator",
        "images": {"width": 256, "height": 256},
        "video": {"width": 320, "height": 240, "fps": 10},
    }
    created = create(stack, "/jobs", body)
    with stack.client() as client:
        job = follow(client, f"/jobs/{created['id']}", timeout=120)
        assert job["status"] == "completed", job
        assert [s["status"] for s in job["steps"]] == ["completed"] * 4
        assert client.get(job["video_url"]).status_code == 200
    assert stack.counters("runpod")["jobs_received_total"] == 0  # nothing went to our simulator


def test_doctor_recognises_the_sdk_test_api_and_says_where_it_serves(sdk_test_api: str) -> None:
    at_root = check_runpod(Settings.load(runpod_endpoint_url=sdk_test_api, runpod_api_key="any"))
    assert at_root.line() == (
        f"ok: {sdk_test_api} is the runpod SDK's local test API (python handler.py --rp_serve_api): it has no"
        " /health and sends no webhooks, so jobs are polled"
    )
    # A user who copied the hosted form of the URL:
    hosted_form = check_runpod(Settings.load(runpod_endpoint_url=f"{sdk_test_api}/v2/ep1", runpod_api_key="any"))
    assert hosted_form.line() == (
        f"STRANGLER_RUNPOD_ENDPOINT_URL: {sdk_test_api}/v2/ep1/health answered 404, but {sdk_test_api} is the runpod"
        f" SDK's local test API, which serves at its root: set STRANGLER_RUNPOD_ENDPOINT_URL={sdk_test_api}"
    )
