"""``strangler-bridge demo``: the main job end to end on one machine.

Starts Redis (embedded when ``STRANGLER_REDIS_URL`` is unset), the RunPod, Runware and video simulators, the
API and two workers; serves the example legacy Flask app (from a source checkout) over HTTP; sets the
``jobs`` flag so the legacy ``POST /api/video/create`` hands the whole pipeline to the service; runs it for a
short script while showing per-step progress; prints where the files are; and stops everything it started.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import httpx

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.cli.own_keys import own_prefix
from strangler_bridge.cli.progress import watch_job
from strangler_bridge.client.service import ServiceClient
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag
from strangler_bridge.contracts.jobs import JobStatus, StepName
from strangler_bridge.errors import BridgeError, ConfigError
from strangler_bridge.settings import Settings

SAMPLE_SCRIPT = (
    "The old lighthouse stood alone on the cliff. Every night its keeper climbed the spiral stairs. "
    "One evening a storm rolled in from the sea. The light held steady until dawn."
)
# Quick but not instant providers, so the progress is visible.
DEMO_KNOBS: dict[str, Any] = {
    "runpod": {"execution_time_s": [0.4, 0.8], "webhook_retry_delay_s": 1.0},
    "runware": {"latency_s": [0.5, 1.0], "image_max_side": 320},
    "video": {},
}


def _example_app_serving() -> Any:
    """The example legacy app's ``serving`` module (it lives in the source checkout, not in the wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "examples" / "legacy_app" / "__init__.py").is_file():
        raise ConfigError("the demo runs the example app in examples/legacy_app: run it from a source checkout")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from examples.legacy_app import serving

    return serving


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Where every file (and the logs) goes.",
)
@click.option("--script", "script_text", default=SAMPLE_SCRIPT, help="The text to narrate (one chunk per sentence).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 8))
def demo(out_dir: Path, script_text: str, workers: int) -> None:
    """Run the whole pipeline locally: Redis, simulators, API, workers and the example Flask app."""
    out_dir = out_dir.resolve()
    serving = _example_app_serving()
    base = Settings.load(artifacts_dir=out_dir / "service-artifacts")
    video_id = f"demo-{int(time.time())}"
    click.echo(f"{click.style('strangler-bridge demo', bold=True)}: starting Redis, simulators, API and workers ...")
    with (
        own_prefix(base) as settings,
        DevStack(settings, workers=workers, log_dir=out_dir / "logs", **DEMO_KNOBS) as stack,
    ):
        own = f"  (keys under {settings.redis_prefix}, removed at the end)" if base.redis_url else ""
        click.echo(f"  redis   {stack.settings.redis_url}{own}")
        click.echo(f"  api     {stack.api_url}")
        for name, server in stack.servers.items():
            click.echo(f"  {name:<7} {server.url}")
        with ServiceClient(stack.api_url, stack.token) as service:
            service.set_flag(Phase.JOBS, PhaseFlag(mode=FlagMode.FASTAPI, percent=100, fallback=False))
            click.echo("  flags   jobs=fastapi: the legacy endpoint hands the job to POST /jobs")
            config = serving.stack_config(stack, out_dir / "legacy-app", POLL_INTERVAL_S=0.2)
            with serving.ServedApp(config, quiet=True) as flask:
                click.echo(f"  legacy  {flask.url}  POST /api/video/create  video_id={video_id}\n")
                result, job = _run(service, flask.url, video_id, script_text)
    _report(result, job, base.artifacts_dir, out_dir)


def _run(service: ServiceClient, flask_url: str, video_id: str, text: str) -> tuple[dict[str, Any], JobStatus]:
    """POST to the legacy endpoint in the background while showing the service's job progress."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            response = httpx.post(
                f"{flask_url}/api/video/create", json={"source_text": text, "video_id": video_id}, timeout=600
            )
            outcome["status"], outcome["body"] = response.status_code, response.json()
        except (httpx.HTTPError, ValueError) as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    caller = threading.Thread(target=call, name="legacy-request", daemon=True)
    caller.start()
    job_id = _find_job(service, video_id, caller)
    if job_id is None:
        caller.join(600)
        raise BridgeError(f"the service never saw a job for {video_id}: {outcome}")
    job = watch_job(service, job_id, timeout_s=600)
    caller.join(600)
    if "error" in outcome or outcome.get("status") != 201:
        raise BridgeError(f"the legacy request failed: {outcome.get('error') or outcome.get('body')}")
    body: dict[str, Any] = outcome["body"]
    return body, job


def _find_job(service: ServiceClient, video_id: str, caller: threading.Thread) -> str | None:
    from strangler_bridge.contracts.listing import RecentList

    while caller.is_alive():
        listing = service.call("GET", "/jobs", RecentList.model_validate_json, params={"video_id": video_id})
        if listing.items:
            return listing.items[0].id
        time.sleep(0.1)
    return None


def _report(result: dict[str, Any], job: JobStatus, artifacts: Path, out_dir: Path) -> None:
    steps = {step.name: step for step in job.steps}
    tts, images, video = (steps[name].batch_id for name in (StepName.TTS, StepName.IMAGEGEN, StepName.VIDEO))
    click.echo(
        f"\n{click.style('done', fg='green', bold=True)}: job {job.id}, video {result.get('video_id')}, "
        f"{result.get('segments')} segments, {result.get('duration_s')} s"
    )
    click.echo(f"  audio files    {artifacts / 'tts' / str(tts)}")
    click.echo(f"  images         {artifacts / 'img' / str(images)}")
    click.echo(f"  segments.json  {artifacts / 'jobs' / job.id / 'segments.json'}")
    rendered = sorted((artifacts / "vid" / str(video)).glob("video-*.mp4"))  # one per delivery; one kept
    click.echo(f"  video          {rendered[0] if rendered else artifacts / 'vid' / str(video)}")
    legacy_copy = out_dir / "legacy-app" / "published" / f"{result.get('video_id')}.mp4"
    click.echo(f"  legacy copy    {legacy_copy}")
    click.echo(f"  logs           {out_dir / 'logs'}")
    click.echo("Everything the demo started has been stopped.")
