"""Per-step progress of a pipeline job, shared by ``jobs submit|watch|retry`` and ``demo``.

In a terminal with rich installed (the ``service`` extra) each step is a live bar; otherwise (piped, in CI,
or the ``[flask]`` install, which has no rich) each change is one plain line, so logs stay readable and
nothing is cut to the width of a terminal that is not there. Either way a step shows its age: how long it
has run, or ran, and how many of its items were reused; a finished job ends with what reuse saved.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Any, Protocol

import click

from strangler_bridge.client.service import ServiceClient
from strangler_bridge.contracts.jobs import JobStatus, StepStatus
from strangler_bridge.errors import DeadlineExceeded

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


def step_age(step: StepStatus, now: datetime | None = None) -> str:
    """How long the step has run (or ran), e.g. ``4.2s`` or ``3m05s``; ``-`` before it starts."""
    if step.started_at is None:
        return "-"
    end = step.finished_at or now or datetime.now(timezone.utc)
    return _duration(max((end - step.started_at).total_seconds(), 0.0))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def step_line(step: StepStatus, now: datetime | None = None) -> str:
    """One step as a plain line: name, done/total, state, age, items reused and, when it has one, its error."""
    count = f"{step.progress.done + step.progress.failed}/{max(step.progress.total, 1)}"
    line = f"{step.name.value:<9} {count:>7}  {step.status.value:<9} {step_age(step, now):>7}"
    if step.reused:
        line = f"{line}  reused {step.reused}"
    return f"{line}  error: {step.error}" if step.error else line


def reuse_summary(status: JobStatus) -> str | None:
    """What reuse spared a job, e.g. ``reused 38 items (saved $0.0271), paid $0.0014``; ``None`` if nothing."""
    if not status.reused:
        return None
    saved = f" (saved ${status.cost_saved:.4f})" if status.cost_saved is not None else ""
    paid = f", paid ${status.cost_total:.4f}" if status.cost_total is not None else ""
    return f"reused {status.reused} items{saved}{paid}"


class _View(Protocol):
    def show(self, status: JobStatus) -> None: ...

    def close(self) -> None: ...


class _PlainView:
    """A line per step whenever the step's counts, state or error change (no cursor movement)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Any, ...]] = {}

    def show(self, status: JobStatus) -> None:
        for step in status.steps:
            key = (step.status, step.progress.done, step.progress.failed, step.progress.total, step.reused, step.error)
            if self._last.get(step.name.value) != key:
                self._last[step.name.value] = key
                click.echo(step_line(step))

    def close(self) -> None:
        """Nothing to tear down."""


class _LiveView:
    """rich bars, one per step; an error is printed in full on a line of its own (never cut to fit a bar)."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        # Fixed, narrow columns: the whole row fits 80 columns, so nothing is shortened to "tts…".
        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]:<9}"),
            TextColumn("{task.fields[age]:>7}"),
            console=console,
            transient=False,
        )
        self._bars: dict[str, Any] = {}
        self._errors: set[tuple[str, str]] = set()
        self._progress.start()

    def show(self, status: JobStatus) -> None:
        for step in status.steps:
            name = step.name.value
            if name not in self._bars:
                self._bars[name] = self._progress.add_task(name, total=1, state="", age="")
            self._progress.update(
                self._bars[name],
                total=max(step.progress.total, 1),
                completed=step.progress.done + step.progress.failed,
                state=step.status.value,
                age=step_age(step),
            )
            if step.error and (name, step.error) not in self._errors:
                self._errors.add((name, step.error))
                self._progress.console.print(f"{name}: {step.error}", soft_wrap=True, markup=False, highlight=False)

    def close(self) -> None:
        self._progress.stop()


def _view() -> _View:
    if sys.stdout.isatty():
        try:
            return _LiveView()
        except ImportError:  # the [flask] install has no rich: plain lines work everywhere
            pass
    return _PlainView()


def watch_job(client: ServiceClient, job_id: str, *, timeout_s: float = 3600) -> JobStatus:
    """Show each step's progress until the job is finished (or ``timeout_s`` passes); returns the last status."""
    deadline = time.monotonic() + timeout_s
    view = _view()
    try:
        status = get_job(client, job_id)
        view.show(status)
        while status.status.value not in TERMINAL:
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"job {job_id} still {status.status.value} after {timeout_s} s")
            status = get_job(client, job_id, wait_s=POLL_WAIT_S, since=status.version)
            view.show(status)
    finally:
        view.close()
    summary = reuse_summary(status)
    if summary:
        click.echo(summary)
    return status
