"""Job progress renders whole at 80 columns, as bars in a terminal and as plain lines elsewhere."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from strangler_bridge.cli.progress import _LiveView, _PlainView, reuse_summary, step_age, step_line
from strangler_bridge.contracts.jobs import JobStatus

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
REASON = "runware HTTP 400: invalidPositivePrompt: the prompt is too short for this model, at least 3 characters"


def _failed_job() -> JobStatus:
    return JobStatus.model_validate(
        {
            "id": "job_" + "a" * 32,
            "status": "failed",
            "created_at": T0,
            "updated_at": T0,
            "progress": {"done": 2, "failed": 1, "total": 4},
            "steps": [
                {
                    "name": "tts",
                    "status": "completed",
                    "started_at": T0,
                    "finished_at": T0 + timedelta(seconds=4.25),
                    "progress": {"done": 12, "total": 12},
                },
                {"name": "segments", "status": "completed", "progress": {"done": 1, "total": 1}},
                {
                    "name": "imagegen",
                    "status": "failed",
                    "started_at": T0 + timedelta(seconds=5),
                    "finished_at": T0 + timedelta(seconds=130),
                    "progress": {"done": 11, "failed": 1, "total": 12},
                    "error": REASON,
                },
                {"name": "video", "status": "pending"},
            ],
        }
    )


def test_each_step_shows_its_own_age() -> None:
    job = _failed_job()
    assert [step_age(step) for step in job.steps] == ["4.2s", "-", "2m05s", "-"]
    running = job.steps[0].model_copy(update={"finished_at": None})
    assert step_age(running, now=T0 + timedelta(hours=1, minutes=2)) == "1h02m"


def test_plain_lines_carry_counts_state_age_and_the_whole_error(capsys: pytest.CaptureFixture[str]) -> None:
    view = _PlainView()
    view.show(_failed_job())
    view.show(_failed_job())  # nothing changed: nothing printed again
    lines = capsys.readouterr().out.splitlines()
    assert lines == [step_line(step) for step in _failed_job().steps]
    assert lines[2].split()[:4] == ["imagegen", "12/12", "failed", "2m05s"]
    assert lines[2].endswith(f"  error: {REASON}")


def test_bars_fit_80_columns_and_print_the_error_whole() -> None:
    out = io.StringIO()
    view = _LiveView(Console(file=out, width=80, force_terminal=True, color_system=None))
    view.show(_failed_job())
    view.close()
    text = out.getvalue()
    assert "…" not in text
    for name in ("tts", "segments", "imagegen", "video"):
        assert f"{name} " in text
    assert REASON in " ".join(text.split())


def test_a_step_shows_its_reused_items_and_the_job_what_reuse_saved() -> None:
    job = _failed_job()
    job.steps[0].reused = 11
    assert step_line(job.steps[0]).split()[4:] == ["reused", "11"]
    assert reuse_summary(job) is None
    job.reused, job.cost_saved, job.cost_total = 11, 0.02712, 0.0013
    assert reuse_summary(job) == "reused 11 items (saved $0.0271), paid $0.0013"
