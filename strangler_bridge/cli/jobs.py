"""``strangler-bridge jobs submit|watch|list|download|retry|cancel``: whole pipeline jobs on the service."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from strangler_bridge.cli import exit_codes
from strangler_bridge.cli.connection import connection_settings, service_client, with_connection
from strangler_bridge.cli.progress import get_job, watch_job
from strangler_bridge.client.bridge import BridgeClient
from strangler_bridge.contracts.common import ItemStatus
from strangler_bridge.contracts.jobs import JobCreate, JobStatus, StepName
from strangler_bridge.contracts.listing import RecentList


def script_to_job(text: str, *, voice: str, style: str | None, video_id: str | None) -> JobCreate:
    """A job from a plain-text script (one chunk per sentence) or from a JSON ``JobCreate`` document."""
    stripped = text.strip()
    try:
        if stripped.startswith("{"):
            return JobCreate.model_validate_json(stripped)
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", stripped) if s.strip()]
        if not sentences:
            raise click.BadParameter("the script is empty", param_hint="SCRIPT")
        body: dict[str, Any] = {"chunks": [{"text": s} for s in sentences], "voice": voice, "video_id": video_id}
        if style:
            body["image_style"] = style
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise click.BadParameter(_first_problem(exc), param_hint="SCRIPT") from None


def _first_problem(exc: ValidationError) -> str:
    """One line: where the first problem is, what it is, and what a job document looks like."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    problem = f"{where}: {error['msg']}" if where else error["msg"]
    return f'{problem}{more}; expected plain text or a job document like {{"chunks": [{{"text": "..."}}]}}'


def _finish(status: JobStatus) -> None:
    click.echo(f"job {status.id}: {status.status.value}")
    if status.error:
        click.echo(f"  error: {status.error}")
    for step in status.steps:
        if step.error and step.error != status.error:
            click.echo(f"  {step.name.value} error: {step.error}")
    for name, url in (("segments", status.segments_url), ("video", status.video_url)):
        if url:
            click.echo(f"  {name}: {url}")
    if status.status.value != "completed":
        sys.exit(exit_codes.JOB_FAILED)


@click.group(epilog=exit_codes.HELP)
def jobs() -> None:
    """Submit and follow whole pipeline jobs on the service (STRANGLER_SERVICE_URL / _TOKEN)."""


@jobs.command()
@click.argument("script", type=click.File("r"))
@click.option("--voice", default="default", show_default=True)
@click.option("--style", default=None, help="Image style appended to every prompt.")
@click.option("--video-id", default=None, help="The legacy app's video id, for correlation.")
@click.option(
    "--callback-url", default=None, help="URL the service POSTs a signed completion webhook to when the job ends."
)
@click.option("--watch/--no-watch", default=True, show_default=True, help="Show live progress until it ends.")
@with_connection
def submit(
    *,
    script: Any,
    voice: str,
    style: str | None,
    video_id: str | None,
    callback_url: str | None,
    watch: bool,
    url: str | None,
    token: str | None,
) -> None:
    """Submit SCRIPT (a text file, '-' for stdin, or a JobCreate JSON document) as a pipeline job.

    With --watch, exits 4 unless the job completes.
    """
    body = script_to_job(script.read(), voice=voice, style=style, video_id=video_id)
    if callback_url is not None:
        try:
            body = JobCreate.model_validate({**body.model_dump(), "callback_url": callback_url})
        except ValidationError as exc:
            raise click.BadParameter(exc.errors()[0]["msg"], param_hint="--callback-url") from None
    with service_client(url, token) as client:
        status = client.call("POST", "/jobs", JobStatus.model_validate_json, content=body.model_dump_json().encode())
        click.echo(f"submitted job {status.id} ({len(body.chunks)} chunks)")
        if watch:
            _finish(watch_job(client, status.id))


@jobs.command()
@click.argument("job_id")
@with_connection
def watch(job_id: str, url: str | None, token: str | None) -> None:
    """Show each step's progress and age until JOB_ID ends (exit 4 unless it completed)."""
    with service_client(url, token) as client:
        _finish(watch_job(client, job_id))


@jobs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@click.option("--video-id", default=None, help="Only the jobs of this legacy video id.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@with_connection
def list_jobs(limit: int, video_id: str | None, as_json: bool, url: str | None, token: str | None) -> None:
    """List recent jobs, newest first: id, status, steps done, last change, video id and error."""
    params: dict[str, Any] = {"limit": limit}
    if video_id:
        params["video_id"] = video_id
    with service_client(url, token) as client:
        listing = client.call("GET", "/jobs", RecentList.model_validate_json, params=params)
    if as_json:
        click.echo(listing.model_dump_json(indent=2))
        return
    if not listing.items:
        click.echo("no jobs")
        return
    for item in listing.items:
        steps = f"{item.progress.done}/{item.progress.total}"
        changed = item.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{item.id}  {item.status.value:<9} {steps:>5}  {changed}  {item.video_id or '-'}"
        click.echo(f"{line}  error: {item.error}" if item.error else line)


@jobs.command()
@click.argument("job_id")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@with_connection
def download(job_id: str, directory: Path, url: str | None, token: str | None) -> None:
    """Download JOB_ID's files into DIRECTORY: audio/, images/, segments.json and video.mp4.

    Files of the steps that completed are downloaded; exits 4 if the job has not completed.
    """
    with BridgeClient.from_settings(connection_settings(url, token)) as client:
        status = get_job(client, job_id)
        steps = {step.name: step.status for step in status.steps}
        if steps[StepName.TTS] == ItemStatus.COMPLETED and steps[StepName.IMAGEGEN] == ItemStatus.COMPLETED:
            media = client.download_job_media(status, directory)
            click.echo(f"audio          {directory / 'audio'}  ({len(media['audio'])} files)")
            click.echo(f"images         {directory / 'images'}  ({len(media['images'])} files)")
        if status.segments_url:
            client.download_segments(status, directory / "segments.json")
            click.echo(f"segments.json  {directory / 'segments.json'}")
        if status.video_url:
            client.download_job_video(status, directory / "video.mp4")
            click.echo(f"video          {directory / 'video.mp4'}")
    if status.status.value != "completed":
        click.echo(f"job {status.id} is {status.status.value}: only the finished steps' files were downloaded")
        sys.exit(exit_codes.JOB_FAILED)


@jobs.command()
@click.argument("job_id")
@click.option("--watch/--no-watch", default=True, show_default=True)
@with_connection
def retry(job_id: str, watch: bool, url: str | None, token: str | None) -> None:
    """Resume a failed or cancelled JOB_ID from its first unfinished step."""
    with service_client(url, token) as client:
        status = client.call("POST", f"/jobs/{job_id}/retry", JobStatus.model_validate_json)
        click.echo(f"job {status.id}: resumed at {status.current_step.value if status.current_step else '-'}")
        if watch:
            _finish(watch_job(client, job_id))


@jobs.command()
@click.argument("job_id")
@with_connection
def cancel(job_id: str, url: str | None, token: str | None) -> None:
    """Cancel JOB_ID: no new submissions; provider work is cancelled where the provider allows it."""
    with service_client(url, token) as client:
        status = client.call("POST", f"/jobs/{job_id}/cancel", JobStatus.model_validate_json)
    click.echo(json.dumps({"id": status.id, "status": status.status.value}))
