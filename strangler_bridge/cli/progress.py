"""Live per-step progress of a pipeline job in the terminal (rich), shared by ``jobs watch`` and ``demo``."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from strangler_bridge.contracts.jobs import JobStatus
from strangler_bridge.errors import DeadlineExceeded
from strangler_bridge.service_client import ServiceClient

TERMINAL = {"completed", "failed", "cancelled"}
# Progress inside a step (chunks or images done) does not change the job's version, so poll with a short wait.
POLL_WAIT_S = 0.5


def get_job(client: ServiceClient, job_id: str, *, wait_s: float = 0, since: int | None = None) -> JobStatus:
    """``GET /jobs/{id}`` (long-polling up to ``wait_s``)."""
    params: dict[str, float | int] = {"wait": wait_s}
    if since is not None:
        params["since"] = since
    return client.call(
        "GET", f"/jobs/{job_id}", JobStatus.model_validate_json, params=params, timeout=wait_s + client.timeout_s
    )


def watch_job(client: ServiceClient, job_id: str, console: Console, *, timeout_s: float = 3600) -> JobStatus:
    """Show one bar per step until the job is finished (or ``timeout_s`` passes); returns the last status."""
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        status = get_job(client, job_id)
        bars: dict[str, TaskID] = {
            step.name.value: progress.add_task(step.name.value, total=max(step.progress.total, 1), state="")
            for step in status.steps
        }
        while True:
            for step in status.steps:
                label = step.status.value + (f" ({step.error})" if step.error else "")
                progress.update(
                    bars[step.name.value],
                    total=max(step.progress.total, 1),
                    completed=step.progress.done + step.progress.failed,
                    state=label,
                )
            if status.status.value in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"job {job_id} still {status.status.value} after {timeout_s} s")
            status = get_job(client, job_id, wait_s=POLL_WAIT_S, since=status.version)
