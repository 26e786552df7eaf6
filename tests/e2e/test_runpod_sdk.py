"""The official runpod SDK (runpod.Endpoint) works against the simulator: run, status, output, cancel and more.

The SDK reads RUNPOD_ENDPOINT_BASE_URL when it is imported, so it runs in a child process with that variable
pointing at the simulator.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import pytest

from strangler_bridge.audio import wav_duration
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.providers.runpod.client import parse_tts_output, tts_input
from strangler_bridge.simulators.runpod import RunPodSimConfig, create_app, speech_duration

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("runpod") is None,
        reason="the official runpod SDK is not installed (pip install runpod, part of the dev extra)",
    ),
]

KEY = "sdk-test-key"
TTS = tts_input([(0, "Read by the official SDK.", "narrator")], "wav")

SDK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import requests
    import runpod

    runpod.api_key = os.environ["SIM_KEY"]
    control = os.environ["SIM_CONTROL"]
    tts = json.loads(os.environ["SIM_TTS"])
    endpoint = runpod.Endpoint("sim")
    result = {}

    job = endpoint.run(tts)
    result["job_id"] = job.job_id
    result["first_status"] = job.status()
    result["output"] = job.output(timeout=30)
    result["final_status"] = job.status()
    result["run_sync"] = endpoint.run_sync({"input": tts, "policy": {"executionTimeout": 60000}}, timeout=30)

    requests.patch(control + "/_sim/config", json={"workers": 0}, timeout=5).raise_for_status()
    queued = endpoint.run({"chunks": [{"index": 0, "text": "never runs", "voice": "v"}], "format": "wav"})
    result["queued_status"] = queued.status()
    result["cancel"] = queued.cancel()
    result["queued_id"] = queued.job_id
    result["cancelled_status"] = queued.status()
    endpoint.run(tts)
    result["health"] = endpoint.health()
    result["purge"] = endpoint.purge_queue()
    try:
        runpod.Endpoint("sim", api_key="wrong-key").health()
    except RuntimeError as exc:
        result["wrong_key"] = str(exc)
    json.dump(result, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    with ThreadedServer(create_app(RunPodSimConfig(api_key=KEY, execution_time_s=0.0))) as server:
        yield server.url


def test_the_official_sdk_round_trip(simulator: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "STRANGLER_"))}
    env.update(
        RUNPOD_ENDPOINT_BASE_URL=simulator + "/v2",
        SIM_KEY=KEY,
        SIM_CONTROL=simulator,
        SIM_TTS=json.dumps(TTS),
    )
    done = subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["first_status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    assert result["final_status"] == "COMPLETED"
    for output in (result["output"], result["run_sync"]):
        [chunk] = parse_tts_output(output)
        audio = base64.b64decode(chunk.audio_base64 or "")
        assert wav_duration(audio) == pytest.approx(speech_duration("Read by the official SDK."))

    assert result["queued_status"] == "IN_QUEUE"
    assert result["cancel"] == {"id": result["queued_id"], "status": "CANCELLED"}
    assert result["cancelled_status"] == "CANCELLED"
    assert result["health"]["jobs"]["inQueue"] == 1 and result["health"]["jobs"]["completed"] == 2
    assert result["purge"] == {"removed": 1, "status": "completed"}
    assert result["wrong_key"].startswith("401 Unauthorized")

    counters = httpx.get(simulator + "/_sim/counters").json()
    assert counters["jobs_received"] == {"run": 3, "runsync": 1}
    assert counters["executions"].get(result["job_id"]) == 1 and counters["max_executions_per_job"] == 1
