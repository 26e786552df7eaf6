"""``strangler-bridge jobs submit|watch|retry|cancel``: whole pipeline jobs on the service, over HTTP."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console

from strangler_bridge.cli import exit_codes
from strangler_bridge.cli.connection import service_client, with_connection
from strangler_bridge.cli.progress import watch_job
from strangler_bridge.contracts.jobs import JobCreate, JobStatus


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


def _finish(status: JobStatus, console: Console) -> None:
    console.print(f"job {status.id}: [bold]{status.status.value}[/bold]")
    if status.error:
        console.print(f"  error: {status.error}")
    for name, url in (("segments", status.segments_url), ("video", status.video_url)):
        if url:
            console.print(f"  {name}: {url}")
    if status.status.value != "completed":
        sys.exit(exit_codes.JOB_FAILED)


@click.group()
def jobs() -> None:
    """Submit and follow whole pipeline jobs on the service (STRANGLER_SERVICE_URL / _TOKEN)."""


@jobs.command()
@click.argument("script", type=click.File("r"))
@click.option("--voice", default="default", show_default=True)
@click.option("--style", default=None, help="Image style appended to every prompt.")
@click.option("--video-id", default=None, help="The legacy app's video id, for correlation.")
@click.option("--watch/--no-watch", default=True, show_default=True, help="Show live progress until it ends.")
@with_connection
def submit(
    *, script: Any, voice: str, style: str | None, video_id: str | None, watch: bool, url: str | None, token: str | None
) -> None:
    """Submit SCRIPT (a text file, '-' for stdin, or a JobCreate JSON document) as a pipeline job."""
    body = script_to_job(script.read(), voice=voice, style=style, video_id=video_id)
    console = Console()
    with service_client(url, token) as client:
        status = client.call("POST", "/jobs", JobStatus.model_validate_json, content=body.model_dump_json().encode())
        console.print(f"submitted job {status.id} ({len(body.chunks)} chunks)")
        if watch:
            _finish(watch_job(client, status.id, console), console)


@jobs.command()
@click.argument("job_id")
@with_connection
def watch(job_id: str, url: str | None, token: str | None) -> None:
    """Show live per-step progress of JOB_ID until it ends (exit 4 unless it completed)."""
    console = Console()
    with service_client(url, token) as client:
        _finish(watch_job(client, job_id, console), console)


@jobs.command()
@click.argument("job_id")
@click.option("--watch/--no-watch", default=True, show_default=True)
@with_connection
def retry(job_id: str, watch: bool, url: str | None, token: str | None) -> None:
    """Resume a failed or cancelled JOB_ID from its first unfinished step."""
    console = Console()
    with service_client(url, token) as client:
        status = client.call("POST", f"/jobs/{job_id}/retry", JobStatus.model_validate_json)
        console.print(f"job {status.id}: resumed at {status.current_step.value if status.current_step else '-'}")
        if watch:
            _finish(watch_job(client, job_id, console), console)


@jobs.command()
@click.argument("job_id")
@with_connection
def cancel(job_id: str, url: str | None, token: str | None) -> None:
    """Cancel JOB_ID: no new submissions; provider work is cancelled where the provider allows it."""
    with service_client(url, token) as client:
        status = client.call("POST", f"/jobs/{job_id}/cancel", JobStatus.model_validate_json)
    click.echo(json.dumps({"id": status.id, "status": status.status.value}))
