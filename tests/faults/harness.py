"""Running one fault scenario against the real stack and measuring what came out of it.

A scenario starts its own append-only ``redis-server``, the three simulators (with the scenario's fault knobs),
the API and two workers (:class:`~strangler_bridge.cli.devstack.DevStack`), submits pipeline jobs, applies its
disruption (kill a worker, restart Redis, ...) and follows every job to the end. Then it counts:

- jobs completed out of those submitted, and the stated reason of every job that did not complete;
- duplicate paid submissions, from the simulators' own counters (a provider asked to run the same work twice);
- lost artifacts: every completed job's ``segments.json``, audio, images and video are downloaded through the API
  and checked (a file that is missing, empty or not what its type says counts as lost);
- stored-versus-recorded mismatches: a downloaded file whose size, or (audio) duration measured from its samples,
  differs from what the record says, or a ``segments.json`` segment whose length is not its audio's.
  Items recorded as done in a job that did not complete are checked the same way.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from strangler_bridge.audio import wav_duration
from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.cli.redis_server import RedisServer
from strangler_bridge.settings import Settings

TERMINAL = {"completed", "failed", "cancelled"}
CHUNKS_PER_JOB = 3
TOKEN = "faults-api-token"
SECRET = "faults-webhook-secret"

#: Fast providers, but slow enough that a disruption lands while jobs are still running.
BASE_RUNPOD: dict[str, Any] = {
    "execution_time_s": (0.1, 0.3),
    "webhook_retry_delay_s": 0.2,
    "webhook_timeout_s": 5.0,
    "seed": 8,
}
BASE_RUNWARE: dict[str, Any] = {"latency_s": (0.05, 0.2), "image_max_side": 32, "seed": 8}
BASE_VIDEO: dict[str, Any] = {
    "force_placeholder": True,
    "latency_s": (0.1, 0.3),
    "callback_backoff_s": 0.1,
    "concurrency": 4,
    "seed": 8,
}
BASE_SETTINGS: dict[str, Any] = {
    "reconcile_after_s": 1.5,
    "reconcile_interval_s": 0.2,
    "tts_group_size": 2,
    "http_timeout_s": 5.0,
}


@dataclass
class Outcome:
    """What one scenario produced."""

    scenario: str
    submitted: int
    completed: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # stated reason -> jobs
    duplicates: dict[str, int] = field(default_factory=dict)  # provider -> extra paid executions
    lost: int = 0
    mismatches: int = 0  # files whose size or duration differs from their record
    in_flight_at_fault: int | None = None  # jobs not yet finished when the disruption hit
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    facts: dict[str, int] = field(default_factory=dict)  # scenario-specific counts the tests check

    @property
    def duplicate_total(self) -> int:
        """Extra paid executions over every provider."""
        return sum(self.duplicates.values())

    def clean(self) -> bool:
        """Every job completed, nothing paid twice, nothing lost, nothing stored unlike its record."""
        return self.completed == self.submitted and self.duplicate_total == 0 and self.lost == 0 and not self.mismatches

    def failed_with(self, words: str) -> int:
        """How many jobs ended with a stated reason containing ``words``."""
        return sum(count for reason, count in self.failures.items() if words in reason)

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "scenario": self.scenario,
            "submitted": self.submitted,
            "completed": self.completed,
            "failures": dict(self.failures),
            "duplicates": self.duplicates,
            "lost": self.lost,
            "mismatches": self.mismatches,
            "in_flight_at_fault": self.in_flight_at_fault,
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
            "facts": self.facts,
        }


@dataclass
class Run:
    """A scenario in progress: what a disruption acts on."""

    stack: DevStack
    redis: RedisServer
    job_ids: list[str]
    outcome: Outcome

    def client(self) -> httpx.Client:
        """An API client with the bearer token."""
        return self.stack.client(timeout_s=15.0)

    def in_flight(self) -> int:
        """How many of the jobs are not finished (read just before a disruption)."""
        with self.client() as client:
            return sum(client.get(f"/jobs/{job_id}").json()["status"] not in TERMINAL for job_id in self.job_ids)

    def mark_fault(self) -> None:
        """Record how many jobs were still running when the disruption hit (the first one, if several)."""
        if self.outcome.in_flight_at_fault is None:
            self.outcome.in_flight_at_fault = self.in_flight()


Fault = Callable[[Run], None]


def job_body(scenario: str, number: int) -> dict[str, Any]:
    """A small pipeline job whose texts are unique (so the providers' per-input counters see duplicates)."""
    return {
        "chunks": [{"text": f"{scenario} job {number} sentence {k}."} for k in range(CHUNKS_PER_JOB)],
        "voice": "narrator",
        "images": {"width": 256, "height": 256},
        "video": {"width": 160, "height": 120, "fps": 5},
        "video_id": f"vid-{number}",
    }


def base_settings(redis_url: str, workdir: Path, overrides: dict[str, Any]) -> Settings:
    """Settings of one scenario's stack: its own Redis, prefix and artifact directory."""
    return Settings.load(
        redis_url=redis_url,
        redis_prefix=f"f{uuid.uuid4().hex[:10]}",
        artifacts_dir=workdir / "artifacts",
        api_tokens=[TOKEN],
        webhook_secret=SECRET,
        **{**BASE_SETTINGS, **overrides},
    )


def submit(client: httpx.Client, scenario: str, jobs: int, deadline: float) -> list[str]:
    """Create the jobs, each under an Idempotency-Key so a retried POST never makes a second job."""
    ids = []
    for number in range(jobs):
        body, key = job_body(scenario, number), f"{scenario}-{number}"
        response = _retrying(client, "POST", "/jobs", deadline, json=body, headers={"Idempotency-Key": key})
        if response.status_code not in (200, 202):
            raise AssertionError(f"creating job {number} answered {response.status_code}: {response.text}")
        ids.append(response.json()["id"])
    return ids


def _retrying(client: httpx.Client, method: str, url: str, deadline: float, **kwargs: Any) -> httpx.Response:
    """Send again while the API is unreachable or answers 503 (an outage being injected), until ``deadline``."""
    while True:
        try:
            response = client.request(method, url, **kwargs)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)  # a retry interval while the service is down, not synchronisation


def settle(client: httpx.Client, job_id: str, deadline: float) -> dict[str, Any] | None:
    """Long-poll a job until it finishes or ``deadline`` passes; ``None`` if the API no longer knows it."""
    status: dict[str, Any] | None = None
    answer = "no answer"
    while status is None or status["status"] not in TERMINAL:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        params: dict[str, Any] = {"wait": min(remaining, 10.0)}
        if status is not None:
            params["since"] = status["version"]
        try:
            response = _retrying(client, "GET", f"/jobs/{job_id}", deadline, params=params)
        except httpx.TransportError as exc:
            answer = type(exc).__name__
            continue
        answer = f"HTTP {response.status_code}"
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            status = response.json()
    return status or {"status": "unreadable", "error": f"the API never answered (last: {answer})"}


def _is_media(kind: str, data: bytes) -> bool:
    if kind == "audio":
        return data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 44
    if kind == "image":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if kind == "video":
        return data[4:8] == b"ftyp" or data.startswith(b"STRANGLER-BRIDGE PLACEHOLDER")
    return False


@dataclass
class Audit:
    """What downloading a completed job's artifacts showed."""

    lost: int = 0
    mismatches: int = 0
    lying_wav_headers: int = 0  # audio whose header claims more samples than the file holds (the fault, seen)


def _audio_truth(audit: Audit, chunk: dict[str, Any], data: bytes) -> None:
    """Compare one chunk's audio with its record: size, and duration measured from the samples present."""
    measured = wav_duration(data)
    if chunk["size_bytes"] != len(data) or abs(chunk["duration_s"] - measured) > 1e-3:
        audit.mismatches += 1
    with contextlib.suppress(wave.Error, EOFError), wave.open(io.BytesIO(data)) as header:
        if header.getnframes() / header.getframerate() > measured + 1.0:
            audit.lying_wav_headers += 1


def audit_artifacts(client: httpx.Client, job: dict[str, Any]) -> Audit:
    """Download every artifact of a completed job through the API and compare each with its record."""
    audit = Audit()
    steps = {step["name"]: step for step in job["steps"]}
    tts = client.get(f"/tts/batch/{steps['tts']['batch_id']}").json()
    segments = client.get(f"/jobs/{job['id']}/segments.json", follow_redirects=True)
    listed = json.loads(segments.content).get("segments", []) if segments.status_code == 200 else []
    if len(listed) != CHUNKS_PER_JOB:
        audit.lost += 1
    durations = {chunk["index"]: chunk["duration_s"] for chunk in tts["chunks"]}
    audit.mismatches += sum(abs(s["end_s"] - s["start_s"] - durations.get(s["index"], -1.0)) > 1e-3 for s in listed)
    images = client.get(f"/imagegen/batch/{steps['imagegen']['batch_id']}").json()
    items: list[tuple[str, dict[str, Any], str | None]] = [("audio", c, c["audio_url"]) for c in tts["chunks"]]
    items += [("image", image, image["image_url"]) for image in images["images"]]
    items.append(("video", job, job["video_url"]))
    for kind, record, url in items:
        # With S3 the API answers a download with a redirect to the bucket.
        response = client.get(url, follow_redirects=True) if url else None
        if response is None or response.status_code != 200 or not _is_media(kind, response.content):
            audit.lost += 1
        elif kind == "audio":
            _audio_truth(audit, record, response.content)
        elif kind == "image" and record["size_bytes"] != len(response.content):
            audit.mismatches += 1
    return audit


def audit_unfinished(client: httpx.Client, job: dict[str, Any]) -> int:
    """Items recorded as done in a job that did not complete, each compared with its file like a completed job's."""
    audit = Audit()
    steps = {step["name"]: step for step in job["steps"]}
    checks = [("tts", "/tts/batch", "chunks", "audio_url"), ("imagegen", "/imagegen/batch", "images", "image_url")]
    for step, path, field_name, link in checks:
        batch_id = steps[step]["batch_id"]
        for item in client.get(f"{path}/{batch_id}").json()[field_name] if batch_id else []:
            if item["status"] != "completed" or not item[link]:
                continue
            data = client.get(item[link], follow_redirects=True).content
            if step == "tts":
                _audio_truth(audit, item, data)
            elif item["size_bytes"] != len(data):
                audit.mismatches += 1
    return audit.mismatches


def extra_executions(per_unit: dict[str, int], expected_units: int) -> int:
    """Executions beyond one per unit of work, plus units beyond those the jobs asked for (work paid anew)."""
    return sum(count - 1 for count in per_unit.values() if count > 1) + max(0, len(per_unit) - expected_units)


def count_duplicates(stack: DevStack, jobs: int, groups_per_job: int) -> dict[str, int]:
    """Duplicate paid submissions per provider, from the simulators' counters.

    A chunk missing from a partial RunPod output is sent again on its own: new work, not a duplicate.
    """
    runpod_counters = stack.counters("runpod")
    runpod = runpod_counters["executions_by_input"]
    resent = runpod_counters.get("partial_outputs", 0)
    runware = stack.counters("runware")["executed_by_task"]
    video = stack.counters("video")["renders_executed"]
    return {
        "runpod": extra_executions(runpod, jobs * groups_per_job + resent),
        "runware": extra_executions(runware, jobs * CHUNKS_PER_JOB),
        "video": extra_executions(video, jobs),
    }


def fault_evidence(stack: DevStack) -> dict[str, int]:
    """The faults the simulators report having injected (zero counts left out), to show a scenario really bit."""
    runpod, runware, video = (stack.counters(name) for name in ("runpod", "runware", "video"))
    hooks = runpod["webhooks"]
    seen = {
        "runpod_error_answers": runpod["injected_faults"] + runpod["responses_429"],
        "runpod_webhooks_lost": hooks.get("lost", 0),
        "runpod_webhooks_duplicated": hooks.get("duplicated", 0),
        "runpod_webhooks_held": hooks.get("held", 0),
        "runpod_webhooks_failed": hooks.get("failed_attempts", 0),
        "runpod_webhooks_differing": hooks.get("differing", 0),
        "runpod_partial_outputs": runpod.get("partial_outputs", 0),
        "runware_429": runware["rate_limited"]["total"],
        "runware_cut_answers": sum(runware["dropped_responses"].values()),
        "runware_task_failures": runware["tasks_failed"],
        "runware_get_response": runware["get_response_calls"],
        "runware_image_redirects": runware["image_redirects"],
        "video_refused": video["requests_down"] + video["requests_injected"],
        "video_callbacks_lost": video["callbacks_lost"],
        "video_callbacks_duplicated": video["callbacks_duplicated"],
        "video_download_redirects": video["download_redirects"],
    }
    return {name: count for name, count in seen.items() if count}


def failure_reason(status: dict[str, Any] | None, deadline_s: float) -> str:
    """A short, stated reason for a job that did not complete."""
    if status is None:
        return "job record lost (404)"
    if status["status"] == "unreadable":
        return str(status["error"])
    if status["status"] in TERMINAL:
        return f"{status['status']}: {status.get('error') or 'no reason given'}"
    return f"still {status['status']} at step {status.get('current_step')} after {deadline_s:.0f} s"


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix: fault knobs for the simulators, settings, and a disruption run mid-flight."""

    key: str
    title: str
    fault: str  # what is injected, for the table
    transient: bool = True  # a transient fault must end with every job completed
    #: A permanent fault (a provider output that can never be used): every job must end failed with a stated
    #: reason containing these words, promptly, without paying twice.
    expect_reason: str | None = None
    runpod: dict[str, Any] = field(default_factory=dict)
    runware: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    disrupt: Fault | None = None
    evidence: tuple[str, ...] = ()  # fault counters (see fault_evidence) that must be non-zero after the run
    workers: int = 2
    runner: Callable[[Scenario, int, Path], Outcome] | None = None  # a scenario that is not API jobs
    #: ``s3``: artifacts in a bucket of moto's S3 server, each process with its own directories (no shared disk).
    storage: Literal["local", "s3"] = "local"

    def passed(self, outcome: Outcome) -> bool:
        """Whether the row holds: nothing paid twice, lost or stored unlike its record, and every job completed
        (a transient fault) or failed with the expected reason (a permanent one)."""
        if self.expect_reason is None:
            return outcome.clean()
        kept = outcome.duplicate_total == 0 and outcome.lost == 0 and not outcome.mismatches
        return kept and outcome.failed_with(self.expect_reason) == outcome.submitted

    def deadline_s(self, jobs: int) -> float:
        """How long the jobs may take in all."""
        return 90.0 + 4.0 * jobs


def run_scenario(scenario: Scenario, jobs: int, workdir: Path) -> Outcome:
    """Run one scenario with ``jobs`` pipeline jobs; every process it started is stopped before it returns."""
    if scenario.runner is not None:
        return scenario.runner(scenario, jobs, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(scenario=scenario.key, submitted=jobs)
    started = time.monotonic()
    deadline = started + scenario.deadline_s(jobs)
    redis = RedisServer(appendonly=True).start()
    cleanup = contextlib.ExitStack()
    settings = base_settings(redis.url, workdir, scenario.settings)
    process_env = None
    if scenario.storage == "s3":
        settings, process_env = on_s3(settings, workdir, cleanup)
    stack = DevStack(
        settings,
        workers=scenario.workers,
        runpod={**BASE_RUNPOD, **scenario.runpod},
        runware={**BASE_RUNWARE, **scenario.runware},
        video={**BASE_VIDEO, **scenario.video},
        log_dir=workdir / "logs",
        process_env=process_env,
    )
    try:
        stack.start()
        with stack.client(timeout_s=30.0) as client:
            run = Run(stack, redis, submit(client, scenario.key, jobs, deadline), outcome)
            if scenario.disrupt is not None:
                scenario.disrupt(run)
            statuses = {job_id: settle(client, job_id, deadline) for job_id in run.job_ids}
            for status in statuses.values():
                if status is not None and status["status"] == "completed":
                    outcome.completed += 1
                    audit = audit_artifacts(client, status)
                    outcome.lost += audit.lost
                    outcome.mismatches += audit.mismatches
                    if audit.lying_wav_headers:
                        outcome.facts["wav_headers_lying"] = outcome.facts.get("wav_headers_lying", 0) + 1
                else:
                    outcome.failures[failure_reason(status, scenario.deadline_s(jobs))] += 1
                    if status is not None and "steps" in status:
                        outcome.mismatches += audit_unfinished(client, status)
        groups = -(-CHUNKS_PER_JOB // stack.settings.tts_group_size)
        outcome.duplicates = count_duplicates(stack, jobs, groups)
        outcome.facts.update(fault_evidence(stack))
    finally:
        outcome.seconds = time.monotonic() - started
        stack.stop()
        redis.close()
        cleanup.close()
    return outcome


def on_s3(
    settings: Settings, workdir: Path, cleanup: contextlib.ExitStack
) -> tuple[Settings, Callable[[str], dict[str, str]]]:
    """Settings with artifacts in a new bucket of a moto S3 server (stopped by ``cleanup``), and each process's
    environment: the AWS credentials and directories of its own."""
    from tests.support.s3 import AWS_ENV, MotoServer, new_bucket

    server = MotoServer(workdir / "moto.log")
    cleanup.callback(server.stop)
    url = f"s3://{new_bucket(server.url)}/artifacts"

    def own(name: str) -> dict[str, str]:
        folder = workdir / "machines" / name
        folder.mkdir(parents=True)
        return {**AWS_ENV, "STRANGLER_ARTIFACTS_DIR": str(folder / "artifacts"), "TMPDIR": str(folder)}

    return settings.model_copy(update={"artifacts_url": url, "s3_endpoint_url": server.url}), own
