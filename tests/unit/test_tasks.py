"""Every RQ task is enqueued by reference: the name RQ stores must bring the worker back to the task."""

from __future__ import annotations

import inspect

import pytest
from rq.job import resolve_function_reference
from rq.utils import import_attribute

from fastapi_app import tasks
from fastapi_app.store.queues import Task
from strangler_bridge.keys import QUEUES

TASKS = {name: value for name, value in vars(tasks).items() if isinstance(value, Task)}


def test_the_task_module_declares_every_task() -> None:
    assert set(TASKS) == {
        "submit_tts",
        "apply_tts_webhook",
        "submit_images",
        "reconcile",
        "advance_job",
        "cancel_provider_work",
        "cancel_at_provider",
        "submit_render",
    }


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_name_rq_stores_resolves_to_the_task(name: str) -> None:
    task = TASKS[name]
    instance, stored = resolve_function_reference(task.func)
    assert instance is None
    assert stored == f"fastapi_app.tasks.{name}"
    assert import_attribute(stored) is task
    assert task.queue_name in QUEUES


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_job_id_takes_the_task_arguments(name: str) -> None:
    task = TASKS[name]
    args = ["a:b:1" if param == "member" else "x" for param in inspect.signature(task.func).parameters]
    assert task.job_id(*args) == task.job_id(*args)
    assert ":" not in task.job_id(*args)  # RQ keys are colon-separated


def test_calling_the_task_runs_its_function(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(tasks.orchestrator, "advance", lambda rt, job_id: seen.append(job_id))
    monkeypatch.setattr(tasks, "worker_runtime", lambda: None)
    tasks.advance_job("job-1")
    assert seen == ["job-1"]
