"""The RunPod simulator over real HTTP: RunPod's routes and states, webhooks as RunPod sends them, every knob."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from strangler_bridge.audio import wav_duration
from strangler_bridge.cli.processes import wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.errors import ProviderNotFound, ProviderRejected
from strangler_bridge.http import NO_RETRY
from strangler_bridge.providers.runpod.client import RunPodClient, RunPodJob, RunPodPolicy, parse_tts_output, tts_input
from strangler_bridge.simulators.runpod import RunPodSimConfig, create_app, speech_duration
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

KEY = "sim-key"
HANDLERS = "tests.e2e.test_runpod_simulator"
#: Test-sized knobs: no GPU time, tiny minimums, webhooks retried 50 ms apart.
FAST = {
    "execution_time_s": 0.0,
    "min_execution_timeout_ms": 1,
    "min_ttl_ms": 1,
    "runsync_wait_min_ms": 1,
    "webhook_retry_delay_s": 0.05,
    "webhook_timeout_s": 0.5,
    "seed": 1,
}


# --- handlers a user could write for runpod.serverless (loaded by the simulator as module:function) -----


def sync_handler(job: dict[str, Any]) -> Any:
    """Does what ``input.do`` says."""
    do = job["input"].get("do")
    results: dict[str, Any] = {
        "error": {"error": "bad input"},
        "error_with_output": {"error": "bad input", "detail": 7},
        "empty": {},
        "text": "plain text",
        "dict_error": {"error": {"code": 1}},
        "refresh": {"ok": 1, "refresh_worker": True},
    }
    if do == "raise":
        raise ValueError("bad seed")
    return results.get(do, {"echo": job["input"], "id": job["id"]})


async def async_handler(job: dict[str, Any]) -> dict[str, Any]:
    """An async handler, awaited on the loop."""
    await asyncio.sleep(0)
    return {"async": True, "n": job["input"]["n"]}


def generator_handler(job: dict[str, Any]) -> Iterator[int]:
    """A streaming handler; its aggregated output is the list of yields."""
    yield from range(job["input"]["n"])


# --- fixtures ---------------------------------------------------------------------------------------


@dataclass
class Hit:
    body: bytes
    content_type: str | None
    at: float


@dataclass
class Receiver:
    """A webhook receiver answering from a script of ``(status, delay_s)``, then 200."""

    hits: list[Hit] = field(default_factory=list)
    script: list[tuple[int, float]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.hits.append(Hit(await request.body(), request.headers.get("content-type"), time.monotonic()))
            status, delay = self.script.pop(0) if self.script else (200, 0.0)
            await asyncio.sleep(delay)
            return Response(status_code=status)

        return app

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(hit.body) for hit in self.hits if hit.body]


@dataclass
class Sim:
    url: str
    hook: str
    receiver: Receiver
    http: httpx.Client  # one connection pool: a new client per call costs tens of ms

    @property
    def endpoint(self) -> str:
        return self.url + "/v2/sim"

    def client(self) -> RunPodClient:
        return RunPodClient(self.endpoint, KEY, retry=NO_RETRY, timeout_s=5.0)

    def patch(self, **knobs: Any) -> dict[str, Any]:
        response = self.http.patch("/_sim/config", json=knobs)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def counters(self) -> dict[str, Any]:
        return self.http.get("/_sim/counters").json()  # type: ignore[no-any-return]

    def api(self, method: str, path: str, *, auth: str | None = f"Bearer {KEY}", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": auth} if auth else {}
        return self.http.request(method, "/v2/sim" + path, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def servers() -> Iterator[Sim]:
    receiver = Receiver()
    app = create_app(RunPodSimConfig(api_key=KEY, **FAST))
    with (
        ThreadedServer(app) as sim_server,
        ThreadedServer(receiver.app()) as hook_server,
        httpx.Client(base_url=sim_server.url, timeout=10) as http,
    ):
        yield Sim(sim_server.url, hook_server.url + "/hook", receiver, http)


@pytest.fixture
def sim(servers: Sim) -> Sim:
    assert servers.http.post("/_sim/reset", params={"config": "true"}).status_code == 200
    servers.receiver.hits.clear()
    servers.receiver.script.clear()
    return servers


def wait_state(client: RunPodClient, job_id: str, *states: str, timeout: float = 10.0) -> RunPodJob:
    def reached() -> RunPodJob | None:
        job = client.status(job_id)
        return job if job.status.value in states else None

    return wait_for(reached, timeout=timeout, what=f"job {job_id} to reach {states}")


def gone(client: RunPodClient, job_id: str) -> bool:
    try:
        client.status(job_id)
    except ProviderNotFound:
        return True
    return False


TTS = tts_input([(0, "Hello there.", "narrator"), (1, "Bye.", "kid")], "wav")

# --- states -----------------------------------------------------------------------------------------


def test_a_job_moves_through_queue_progress_and_completion_with_times(sim: Sim) -> None:
    sim.patch(workers=0)
    client = sim.client()
    job = client.run(TTS)
    assert job.id.endswith("-u1") and job.status.value == "IN_QUEUE"
    queued = client.status(job.id)
    assert queued.to_wire() == {"id": job.id, "status": "IN_QUEUE"}
    sim.patch(workers=1, execution_time_s=0.3)
    running = wait_state(client, job.id, "IN_PROGRESS")
    assert running.delay_time_ms is not None and running.worker_id and running.execution_time_ms is None
    done = wait_state(client, job.id, "COMPLETED")
    assert done.execution_time_ms is not None and done.execution_time_ms >= 250
    chunks = parse_tts_output(done.output)
    assert [c.index for c in chunks] == [0, 1]
    for chunk, text in zip(chunks, ["Hello there.", "Bye."], strict=True):
        audio = base64.b64decode(chunk.audio_base64 or "")
        assert wav_duration(audio) == pytest.approx(chunk.duration_s) == pytest.approx(speech_duration(text))


def test_speech_duration_follows_the_text() -> None:
    assert speech_duration("Hi") == 0.3
    assert speech_duration("x" * 100) == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("do", "status", "output", "error"),
    [
        ("echo", "COMPLETED", {"echo": {"do": "echo"}, "id": "<id>"}, None),
        ("text", "COMPLETED", "plain text", None),
        ("empty", "COMPLETED", None, None),
        ("dict_error", "COMPLETED", None, None),
        ("refresh", "COMPLETED", {"ok": 1}, None),
        ("error", "FAILED", None, "bad input"),
        ("error_with_output", "FAILED", {"detail": 7}, "bad input"),
    ],
)
def test_handler_results_map_as_runpod_maps_them(sim: Sim, do: str, status: str, output: Any, error: Any) -> None:
    sim.patch(handler=f"{HANDLERS}:sync_handler")
    client = sim.client()
    job = wait_state(client, client.run({"do": do}).id, status)
    if isinstance(output, dict) and output.get("id") == "<id>":
        output["id"] = job.id
    assert (job.output, job.error) == (output, error)
    assert ("output" in job.to_wire()) == (output is not None)


def test_a_raised_exception_fails_the_job_with_a_json_error(sim: Sim) -> None:
    sim.patch(handler=f"{HANDLERS}:sync_handler")
    client = sim.client()
    job = wait_state(client, client.run({"do": "raise"}).id, "FAILED")
    detail = job.error_detail()
    assert isinstance(detail, dict)
    assert (detail["error_type"], detail["error_message"]) == ("<class 'ValueError'>", "bad seed")
    assert "Traceback" in detail["error_traceback"] and detail["worker_id"] == job.worker_id


def test_async_and_generator_handlers(sim: Sim) -> None:
    client = sim.client()
    sim.patch(handler=f"{HANDLERS}:async_handler")
    assert wait_state(client, client.run({"n": 5}).id, "COMPLETED").output == {"async": True, "n": 5}
    sim.patch(handler=f"{HANDLERS}:generator_handler")
    assert wait_state(client, client.run({"n": 3}).id, "COMPLETED").output == [0, 1, 2]
    sim.patch(aggregate_stream=False)
    assert not wait_state(client, client.run({"n": 3}).id, "COMPLETED").has_output


def test_a_handler_file_that_calls_serverless_start_runs_unmodified(sim: Sim, tmp_path: Path) -> None:
    pytest.importorskip("runpod", reason="the runpod package is needed to intercept runpod.serverless.start")
    handler = tmp_path / "my_worker.py"
    handler.write_text(
        "import runpod\n\n"
        "def handler(job):\n"
        "    return {'upper': job['input']['text'].upper()}\n\n"
        "runpod.serverless.start({'handler': handler})\n"
    )
    sim.patch(handler=str(handler))
    client = sim.client()
    assert wait_state(client, client.run({"text": "hey"}).id, "COMPLETED").output == {"upper": "HEY"}


@pytest.mark.parametrize(
    "start",
    [
        "runpod.serverless.start({'handler': handler, 'return_aggregate_stream': True})",
        "runpod.serverless.start(CONFIG)",
    ],
    ids=["dict literal", "named config"],
)
def test_a_handler_file_whose_start_call_is_behind_the_main_guard_runs_unmodified(
    sim: Sim, tmp_path: Path, start: str
) -> None:
    pytest.importorskip("runpod", reason="the handler file imports runpod, as a real one does")
    handler = tmp_path / "guarded_worker.py"
    handler.write_text(
        "import runpod\n\n"
        "def handler(job):\n"
        "    return {'lower': job['input']['text'].lower()}\n\n"
        "CONFIG = {'handler': handler}\n\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('the guarded code must not run in the simulator')\n"
        f"    {start}\n"
    )
    sim.patch(handler=str(handler))
    client = sim.client()
    assert wait_state(client, client.run({"text": "HEY"}).id, "COMPLETED").output == {"lower": "hey"}


def test_a_guarded_file_without_a_start_call_is_refused_naming_the_fix(sim: Sim, tmp_path: Path) -> None:
    handler = tmp_path / "no_start.py"
    handler.write_text("def handler(job):\n    return 1\n\nif __name__ == '__main__':\n    print(handler({}))\n")
    response = sim.http.patch("/_sim/config", json={"handler": str(handler)})
    assert response.status_code == 422
    assert f"name the function ({handler}:handler), or call runpod.serverless.start" in response.json()["error"]


def test_a_bad_handler_is_refused_with_a_reason(sim: Sim) -> None:
    response = sim.http.patch("/_sim/config", json={"handler": "no_such_module_xyz:handler"})
    assert response.status_code == 422 and "no_such_module_xyz" in response.json()["error"]


def test_cancel_a_queued_job_and_a_running_one(sim: Sim) -> None:
    client = sim.client()
    sim.patch(workers=0)
    queued = client.run(TTS)
    assert client.cancel(queued.id).to_wire() == {"id": queued.id, "status": "CANCELLED"}
    sim.patch(workers=1, execution_time_s=30)
    running = client.run(TTS)
    wait_state(client, running.id, "IN_PROGRESS")
    cancelled = client.cancel(running.id)
    assert cancelled.status.value == "CANCELLED" and cancelled.execution_time_ms is not None
    assert client.cancel(running.id).status.value == "CANCELLED"  # a finished job stays as it is
    sim.patch(execution_time_s=0)
    wait_state(client, client.run(TTS).id, "COMPLETED")  # the cancelled job freed its worker
    assert sim.counters()["outcomes"] == {"CANCELLED": 2, "COMPLETED": 1}


@pytest.mark.parametrize("as_status", ["TIMED_OUT", "FAILED"])
def test_execution_timeout_stops_the_job(sim: Sim, as_status: str) -> None:
    sim.patch(execution_time_s=30, execution_timeout_status=as_status)
    client = sim.client()
    job = client.run(TTS, policy=RunPodPolicy(execution_timeout_ms=100))
    done = wait_state(client, job.id, as_status)
    assert done.execution_time_ms is not None and 90 <= done.execution_time_ms < 5000


def test_ttl_deletes_the_job_or_times_it_out(sim: Sim) -> None:
    client = sim.client()
    sim.patch(workers=0)
    deleted = client.run(TTS, policy=RunPodPolicy(ttl_ms=100))
    wait_for(lambda: gone(client, deleted.id), timeout=10, what="TTL deletion")
    sim.patch(ttl_expiry="timed_out")
    expired = client.run(TTS, policy=RunPodPolicy(ttl_ms=100), webhook=sim.hook)
    assert wait_state(client, expired.id, "TIMED_OUT").delay_time_ms is None
    wait_for(sim.receiver.payloads, what="the TIMED_OUT webhook")
    assert sim.receiver.payloads()[0]["status"] == "TIMED_OUT"


def test_results_are_kept_for_the_retention_window_only(sim: Sim) -> None:
    sim.patch(runsync_retention_s=0.2)
    client = sim.client()
    synced = client.runsync(TTS, wait_ms=5000)
    assert synced.id.startswith("sync-") and synced.status.value == "COMPLETED"
    ran = wait_state(client, client.run(TTS).id, "COMPLETED")
    wait_for(lambda: gone(client, synced.id), timeout=10, what="runsync retention to end")
    assert client.status(ran.id).status.value == "COMPLETED"  # /run results are kept longer
    sim.patch(run_retention_s=0.2)
    late = wait_state(client, client.run(TTS).id, "COMPLETED")
    wait_for(lambda: gone(client, late.id), timeout=10, what="run retention to end")


def test_retry_requeues_a_failed_job_under_the_same_id(sim: Sim) -> None:
    sim.patch(fail_first_executions=1)
    client = sim.client()
    job = client.run(TTS)
    failed = wait_state(client, job.id, "FAILED")
    assert "simulated failure" in (failed.error_message() or "")
    again = client.retry(job.id)
    assert again.to_wire() == {"id": job.id, "status": "IN_QUEUE"}
    done = wait_state(client, job.id, "COMPLETED")
    assert done.retries == 1 and done.error is None and done.has_output
    with pytest.raises(ProviderRejected, match="only FAILED or TIMED_OUT"):
        client.retry(job.id)
    counters = sim.counters()
    assert counters["executions"] == {job.id: 2} and counters["retried"] == 1


def test_purge_removes_queued_jobs_only(sim: Sim) -> None:
    sim.patch(workers=1, execution_time_s=30)
    client = sim.client()
    running = client.run({"chunks": [{"index": 0, "text": "a"}]})
    wait_state(client, running.id, "IN_PROGRESS")
    queued = [client.run(tts_input([(i, f"text {i}", "v")], "wav")).id for i in range(3)]
    health = client.health()
    assert (health.jobs.in_progress, health.jobs.in_queue, health.workers.running, health.workers.idle) == (1, 3, 1, 0)
    purge = client.purge_queue()
    assert (purge.removed, purge.status) == (3, "completed")
    assert all(gone(client, job_id) for job_id in queued)
    assert client.status(running.id).status.value == "IN_PROGRESS"


def test_health_counts_jobs(sim: Sim) -> None:
    sim.patch(fail_first_executions=1)
    client = sim.client()
    job = client.run(TTS)
    wait_state(client, job.id, "FAILED")
    client.retry(job.id)
    wait_state(client, job.id, "COMPLETED")
    raw = sim.api("GET", "/health").json()
    assert raw["jobs"] == {"completed": 1, "failed": 1, "inProgress": 0, "inQueue": 0, "retried": 1}
    assert {"idle", "running", "initializing", "ready", "throttled"} <= set(raw["workers"])


# --- the HTTP surface -------------------------------------------------------------------------------


def test_both_auth_header_forms_are_accepted_and_no_key_is_401(sim: Sim) -> None:
    assert sim.api("GET", "/health", auth=f"Bearer {KEY}").status_code == 200
    assert sim.api("GET", "/health", auth=KEY).status_code == 200
    for auth in (None, "Bearer wrong", "wrong"):
        response = sim.api("GET", "/health", auth=auth)
        assert response.status_code == 401 and "error" in response.json()
    sim.patch(api_key=None)
    assert sim.api("GET", "/health", auth="Bearer anything").status_code == 200
    assert sim.api("GET", "/health", auth=None).status_code == 401


def test_a_pinned_endpoint_id_404s_other_ids(sim: Sim) -> None:
    sim.patch(endpoint_id="ep1")
    assert sim.api("GET", "/health").status_code == 404
    assert sim.http.get("/v2/ep1/health", headers={"Authorization": KEY}).status_code == 200


def test_bad_requests_get_400_and_big_ones_413(sim: Sim) -> None:
    assert sim.api("POST", "/run", json={"prompt": "no input key"}).json() == {
        "error": 'missing required field "input"'
    }
    assert sim.api("POST", "/run", content=b"{nope").status_code == 400
    assert sim.api("POST", "/run", json={"input": {}, "policy": {"ttl": "soon"}}).status_code == 400
    assert sim.api("POST", "/run", json={"input": {}, "webhook": "ftp://x"}).status_code == 400
    sim.patch(max_run_bytes=1000, max_runsync_bytes=2000, min_ttl_ms=10_000)
    assert sim.api("POST", "/run", json={"input": {}, "policy": {"ttl": 5000}}).status_code == 400
    blob = {"input": {"text": "x" * 1500}}
    assert sim.api("POST", "/run", json=blob).status_code == 413
    assert sim.api("POST", "/runsync", json=blob).status_code == 200
    assert sim.api("POST", "/runsync", json={"input": {"text": "x" * 2500}}).status_code == 413
    assert sim.counters()["jobs_received_total"] == 1


def test_unknown_jobs_404_on_every_job_route(sim: Sim) -> None:
    for method, path in [("GET", "/status/x"), ("POST", "/cancel/x"), ("POST", "/retry/x"), ("GET", "/status-sync/x")]:
        assert sim.api(method, path).status_code == 404


def test_status_answers_get_and_post_and_status_sync_long_polls(sim: Sim) -> None:
    sim.patch(execution_time_s=0.3)
    job_id = sim.api("POST", "/run", json={"input": TTS}).json()["id"]
    assert sim.api("POST", f"/status/{job_id}").json()["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert sim.api("GET", f"/status-sync/{job_id}", params={"wait": 5000}).json()["status"] == "COMPLETED"
    assert sim.api("GET", f"/status/{job_id}", params={"ttl": 6000}).json()["status"] == "COMPLETED"


def test_runsync_returns_the_in_flight_status_when_the_wait_runs_out(sim: Sim) -> None:
    sim.patch(execution_time_s=0.5)
    client = sim.client()
    early = client.runsync(TTS, wait_ms=50)
    assert early.id.startswith("sync-") and early.status.value in ("IN_QUEUE", "IN_PROGRESS")
    assert wait_state(client, early.id, "COMPLETED").has_output


def test_url_output_mode_serves_the_audio_without_auth(sim: Sim) -> None:
    sim.patch(output_mode="url")
    client = sim.client()
    job = wait_state(client, client.run(TTS).id, "COMPLETED")
    for chunk in parse_tts_output(job.output):
        assert chunk.audio_base64 is None and chunk.audio_url and chunk.audio_url.startswith(sim.url + "/v2/sim/audio/")
        response = sim.http.get(chunk.audio_url)
        assert response.headers["content-type"] == "audio/wav"
        assert wav_duration(response.content) == pytest.approx(chunk.duration_s)


def test_bad_tts_input_fails_with_a_clear_error(sim: Sim) -> None:
    client = sim.client()
    for bad, words in [({"text": "hi"}, '"chunks"'), (tts_input([(0, "hi", "v")], "mp3"), "wav only")]:
        job = wait_state(client, client.run(bad).id, "FAILED")
        assert words in (job.error or "")


def test_config_patches_are_validated_and_the_key_is_masked(sim: Sim) -> None:
    response = sim.http.patch("/_sim/config", json={"workers": -1})
    assert response.status_code == 422 and "workers" in response.json()["error"]
    assert sim.http.patch("/_sim/config", json={"no_such_knob": 1}).status_code == 422
    assert sim.http.get("/_sim/config").json()["api_key"] == "***"


# --- webhooks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"])
def test_one_webhook_per_terminal_job_with_status_input_and_webhook(sim: Sim, end: str) -> None:
    knobs = {
        "COMPLETED": {},
        "FAILED": {"failure_rate": 1.0},
        "CANCELLED": {"workers": 0},
        "TIMED_OUT": {"execution_time_s": 30},
    }[end]
    sim.patch(**knobs)
    client = sim.client()
    policy = RunPodPolicy(execution_timeout_ms=50) if end == "TIMED_OUT" else None
    job = client.run(TTS, webhook=sim.hook + "?token=abc", policy=policy)
    if end == "CANCELLED":
        client.cancel(job.id)
    wait_for(lambda: sim.counters()["webhooks"]["delivered"] == 1, what="the webhook")
    final = client.status(job.id)
    [hit] = sim.receiver.hits
    assert hit.content_type == "application/json"
    payload = json.loads(hit.body)
    assert payload == {**final.to_wire(), "input": TTS, "webhook": sim.hook + "?token=abc"}
    assert payload["status"] == end


def test_a_failed_webhook_is_retried_up_to_two_more_times(sim: Sim) -> None:
    sim.receiver.script.extend([(500, 0.0), (404, 0.0)])
    client = sim.client()
    job = client.run(TTS, webhook=sim.hook)
    wait_for(lambda: sim.counters()["webhooks"]["delivered"] == 1, what="the third attempt")
    assert [p["id"] for p in sim.receiver.payloads()] == [job.id] * 3
    gaps = [b.at - a.at for a, b in zip(sim.receiver.hits, sim.receiver.hits[1:], strict=False)]
    assert all(gap >= 0.04 for gap in gaps)
    assert sim.counters()["webhooks"] | {} == {
        "attempts": 3,
        "delivered": 1,
        "failed_attempts": 2,
        "gave_up": 0,
        "lost": 0,
        "duplicated": 0,
        "held": 0,
        "empty_bodies": 0,
        "differing": 0,
    }


def test_the_webhook_is_given_up_after_three_failures_and_a_slow_answer_is_a_failure(sim: Sim) -> None:
    sim.patch(webhook_timeout_s=0.2)
    sim.receiver.script.extend([(503, 0.0), (200, 1.0), (503, 0.0)])
    sim.client().run(TTS, webhook=sim.hook)
    wait_for(lambda: sim.counters()["webhooks"]["gave_up"] == 1, what="the webhook to be given up")
    webhooks = sim.counters()["webhooks"]
    assert (webhooks["attempts"], webhooks["failed_attempts"], webhooks["delivered"]) == (3, 3, 0)


def test_strict_mode_wants_200_not_any_2xx(sim: Sim) -> None:
    sim.receiver.script.extend([(202, 0.0), (202, 0.0)])
    client = sim.client()
    client.run(TTS, webhook=sim.hook)
    wait_for(lambda: sim.counters()["webhooks"]["delivered"] == 1, what="a 202 to count as delivered")
    sim.patch(webhook_strict_200=True)
    client.run(TTS, webhook=sim.hook)
    wait_for(lambda: sim.counters()["webhooks"]["delivered"] == 2, what="the retry after a strict 202")
    assert sim.counters()["webhooks"]["failed_attempts"] == 1


def test_lost_duplicated_and_empty_webhooks(sim: Sim) -> None:
    client = sim.client()
    sim.patch(webhook_faults={"lost_rate": 1.0})
    wait_state(client, client.run(TTS, webhook=sim.hook).id, "COMPLETED")
    wait_for(lambda: sim.counters()["webhooks"]["lost"] == 1, what="the lost webhook to be counted")
    sim.patch(webhook_faults={"lost_rate": 0.0, "duplicates": 2})
    job = client.run(TTS, webhook=sim.hook)
    wait_for(lambda: len(sim.receiver.hits) == 3, what="three copies")
    assert [p["id"] for p in sim.receiver.payloads()] == [job.id] * 3
    sim.patch(webhook_faults={"duplicates": 0, "empty_body_rate": 1.0})
    client.run(TTS, webhook=sim.hook)
    wait_for(lambda: len(sim.receiver.hits) == 4, what="the empty webhook")
    assert sim.receiver.hits[-1].body == b"" and sim.counters()["webhooks"]["empty_bodies"] == 1


def test_delayed_webhooks_arrive_late(sim: Sim) -> None:
    sim.patch(webhook_faults={"extra_delay_s": [0.3, 0.4]})
    started = time.monotonic()
    sim.client().run(TTS, webhook=sim.hook)
    wait_for(lambda: sim.receiver.hits, what="the delayed webhook")
    assert sim.receiver.hits[0].at - started >= 0.3


def test_held_webhooks_are_released_out_of_order(sim: Sim) -> None:
    sim.patch(workers=1, webhook_faults={"reorder": "reverse", "reorder_batch": 3})
    client = sim.client()
    ids = []
    for n in range(3):
        ids.append(client.run(tts_input([(0, f"text {n}", "v")], "wav"), webhook=sim.hook).id)
        wait_state(client, ids[-1], "COMPLETED")
    wait_for(lambda: len(sim.receiver.hits) == 3, what="the released batch")
    assert [p["id"] for p in sim.receiver.payloads()] == ids[::-1]
    sim.patch(webhook_faults={"reorder_batch": 10})
    late = client.run(TTS, webhook=sim.hook).id
    wait_for(lambda: sim.counters()["webhooks_pending"] == 1, what="the webhook to be held")
    assert sim.http.post("/_sim/webhooks/release").json() == {"released": 1}
    wait_for(lambda: len(sim.receiver.hits) == 4, what="the manual release")
    assert sim.receiver.payloads()[-1]["id"] == late


def test_a_webhook_can_arrive_before_run_answers(sim: Sim) -> None:
    sim.patch(run_response_delay_s=0.5)
    job = sim.client().run(TTS, webhook=sim.hook)
    answered = time.monotonic()
    assert sim.receiver.hits and sim.receiver.hits[0].at < answered
    assert sim.receiver.payloads()[0]["id"] == job.id


# --- knobs and counters -----------------------------------------------------------------------------


def test_queue_delay_and_execution_time_ranges(sim: Sim) -> None:
    sim.patch(queue_delay_s=0.2, execution_time_s=[0.1, 0.15])
    client = sim.client()
    job = wait_state(client, client.run(TTS).id, "COMPLETED")
    assert job.delay_time_ms is not None and job.delay_time_ms >= 190
    assert job.execution_time_ms is not None and 95 <= job.execution_time_ms < 2000


def test_worker_count_caps_concurrency(sim: Sim) -> None:
    sim.patch(workers=2, execution_time_s=0.3)
    client = sim.client()
    ids = [client.run(tts_input([(0, f"n{n}", "v")], "wav")).id for n in range(4)]
    seen: list[tuple[int, int]] = []

    def all_done() -> bool:
        health = client.health()
        seen.append((health.jobs.in_progress, health.jobs.in_queue))
        return health.jobs.completed == 4

    wait_for(all_done, what="four jobs on two workers")
    assert max(running for running, _ in seen) == 2 and (2, 2) in seen
    assert {client.status(i).worker_id for i in ids} == {"simworker00000", "simworker00001"}


def test_failure_rate_is_reproducible_with_a_seed(sim: Sim) -> None:
    client = sim.client()

    def outcomes() -> list[str]:
        ids = [client.run({"chunks": [{"index": 0, "text": f"t{n}"}]}).id for n in range(12)]
        return [wait_state(client, i, "COMPLETED", "FAILED").status.value for i in ids]

    sim.patch(failure_rate=0.5, seed=42, workers=1)
    first = outcomes()
    sim.patch(seed=42)
    assert outcomes() == first and {"COMPLETED", "FAILED"} == set(first)
    sim.patch(failure_rate=1.0)
    failed = wait_state(client, client.run(TTS).id, "FAILED")
    assert (failed.error_message() or "").startswith("<class") and "simulated failure" in (failed.error or "")


def test_rate_limit_answers_429_over_the_window(sim: Sim) -> None:
    sim.patch(rate_limits={"run": 2})
    statuses = [sim.api("POST", "/run", json={"input": TTS}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert sim.api("GET", "/health").status_code == 200
    counters = sim.counters()
    assert (counters["responses_429"], counters["jobs_received_total"]) == (1, 2)


def test_injected_faults_are_answered_in_order_before_any_job_exists(sim: Sim) -> None:
    sim.patch(http_faults={"run": [503, 429], "status": [500]})
    statuses = [sim.api("POST", "/run", json={"input": TTS}).status_code for _ in range(3)]
    assert statuses == [503, 429, 200]
    counters = sim.counters()
    assert (counters["injected_faults"], counters["jobs_received"], counters["requests"]["run"]) == (2, {"run": 1}, 3)
    assert sim.patch()["http_faults"] == {"run": [], "status": [500]}


def test_counters_prove_each_input_ran_once(sim: Sim) -> None:
    client = sim.client()
    inputs = [tts_input([(i, f"chunk {i}", "v")], "wav") for i in range(5)]
    ids = [client.run(payload).id for payload in inputs]
    for job_id in ids:
        wait_state(client, job_id, "COMPLETED")
    counters = sim.counters()
    assert counters["jobs_received"] == {"run": 5} and counters["executions_total"] == 5
    assert counters["max_executions_per_input"] == 1 and counters["max_executions_per_job"] == 1
    assert set(counters["executions"]) == set(ids) and len(counters["executions_by_input"]) == 5


# --- the command ------------------------------------------------------------------------------------


def test_the_cli_serves_the_simulator_and_prints_the_endpoint_url(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "sim.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    args = ["simulate", "runpod", "--port", str(port), "--api-key", "k1", "--execution-time", "0", "--output", "url"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strangler_bridge.cli.main", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/_sim/counters")
        endpoint = f"http://127.0.0.1:{port}/v2/sim"
        assert f"STRANGLER_RUNPOD_ENDPOINT_URL={endpoint}" in log.read_text()
        assert "k1" not in log.read_text()
        with RunPodClient(endpoint, "k1", retry=NO_RETRY) as client:
            job = wait_state(client, client.run(TTS).id, "COMPLETED")
        assert all(chunk.audio_url for chunk in parse_tts_output(job.output))
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_reset_restores_the_injected_faults_given_at_start() -> None:
    app = create_app(RunPodSimConfig(api_key=KEY, http_faults={"health": [503]}))
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, headers={"Authorization": KEY}) as http:
        statuses = [http.get("/v2/sim/health").status_code for _ in range(2)]
        http.post("/_sim/reset", params={"config": "true"})
        statuses.append(http.get("/v2/sim/health").status_code)
    assert statuses == [503, 200, 503]
