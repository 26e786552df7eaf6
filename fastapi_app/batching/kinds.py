"""What the worker does for each kind of batch: submit its open groups, and resolve one of its overdue groups.

The one place that dispatches on a batch's kind: the orchestrator submits a pipeline step's batch through it,
and the reconciler (:data:`fastapi_app.reconciler.RECONCILERS`) resolves the batch entries of the due index
through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from fastapi_app import tasks
from fastapi_app.images import runware_work
from fastapi_app.renders import video_work
from fastapi_app.runtime import Runtime
from fastapi_app.tts import runpod_work
from strangler_bridge.keys import DueKind, DueMember

#: Resolves one overdue due-index entry.
Reconcile = Callable[[Runtime, DueMember], None]


@dataclass(frozen=True)
class BatchWork:
    """The work of one kind of batch."""

    submit: Callable[[Runtime, str], None]  # enqueue the submission of a batch's open groups
    reconcile: Reconcile  # resolve one overdue group


def _reconcile_tts(rt: Runtime, due: DueMember) -> None:
    runpod_work.reconcile_group(rt, due.record_id, due.group)


def _reconcile_image(rt: Runtime, due: DueMember) -> None:
    runware_work.reconcile_group(rt, due.record_id, due.group)


def _reconcile_render(rt: Runtime, due: DueMember) -> None:
    video_work.reconcile(rt, due.record_id)


# The submissions look their task up when called, not when this table is built: the task module may still be
# importing then (it imports the work modules, which lead here).
def _submit_tts(rt: Runtime, batch_id: str) -> None:
    tasks.submit_tts.enqueue(rt, batch_id)


def _submit_images(rt: Runtime, batch_id: str) -> None:
    tasks.submit_images.enqueue(rt, batch_id)


def _submit_render(rt: Runtime, batch_id: str) -> None:
    tasks.submit_render.enqueue(rt, batch_id)


BATCH_WORK: Mapping[DueKind, BatchWork] = MappingProxyType(
    {
        DueKind.TTS: BatchWork(_submit_tts, _reconcile_tts),
        DueKind.IMAGES: BatchWork(_submit_images, _reconcile_image),
        DueKind.VIDEO: BatchWork(_submit_render, _reconcile_render),
    }
)
