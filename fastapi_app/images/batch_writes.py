"""Group commit of a batch's writes on an event loop.

Every image of a batch is claimed and then completed (or failed, released, rejected) by a transition of the
batch record, and each write parses and rewrites the whole document (~60 KB for 20 images): about half of an
image's worker CPU (docs/BENCHMARKS.md, benchmark 1). The images of a batch start and finish almost together,
so :class:`BatchWrites` starts the first write of a batch at once, in a thread (Redis never blocks the loop),
and sends the writes for that batch that arrive meanwhile together, in order, in the next single
:func:`~fastapi_app.batching.updates.update_batch_many`. Each caller still gets its own result or exception, and its
transition is as atomic as alone; it waits at most for the write in flight before its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from fastapi_app.batching.updates import Transition, update_batch_many
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch
from strangler_bridge.errors import RecordNotFound, StoreUnavailable

log = logging.getLogger(__name__)
R = TypeVar("R")

#: Applies transitions of one batch, in order, in one atomic write (:func:`update_batch_many`).
WriteMany = Callable[[Runtime, str, Sequence[Transition[Any]]], tuple[Batch, list[Any]]]


@dataclass
class _Queued:
    transition: Transition[Any]
    future: asyncio.Future[Any]


class BatchWrites:
    """Coalesces the writes of each batch made on one event loop; use an instance from that loop only."""

    def __init__(self, write_many: WriteMany = update_batch_many) -> None:
        self._write_many = write_many
        self._queued: dict[str, list[_Queued]] = {}  # batch id -> writes waiting; a key: a writer is running
        self._writers: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def apply(self, rt: Runtime, batch_id: str, transition: Transition[R]) -> R:
        """Apply ``transition`` to the batch atomically (with the writes queued beside it); its result.

        Raises what the write raised: ``RecordNotFound`` if the batch does not exist, ``StoreUnavailable``, or the
        transition's own exception.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queued = self._queued.get(batch_id)
        if queued is None:
            self._queued[batch_id] = [_Queued(transition, future)]
            writer = asyncio.create_task(self._run(rt, batch_id))
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        else:
            queued.append(_Queued(transition, future))
        return cast(R, await future)

    async def _run(self, rt: Runtime, batch_id: str) -> None:
        # One writer per batch: it takes everything queued so far, writes it, and repeats until nothing is left.
        taken: list[_Queued] = []
        try:
            while self._queued[batch_id]:
                taken, self._queued[batch_id] = self._queued[batch_id], []
                await self._write(rt, batch_id, taken)
        finally:
            for entry in taken + self._queued.pop(batch_id):
                if not entry.future.done():  # only when the loop is shutting down and cancelled this writer
                    entry.future.cancel()

    async def _write(self, rt: Runtime, batch_id: str, entries: list[_Queued]) -> None:
        try:
            _, results = await asyncio.to_thread(self._write_many, rt, batch_id, [e.transition for e in entries])
        except (RecordNotFound, StoreUnavailable) as exc:
            # The batch is gone, or Redis is: every transition would fail the same way.
            for entry in entries:
                _settle(entry.future, error=exc)
        except Exception as exc:
            if len(entries) == 1:
                _settle(entries[0].future, error=exc)
                return
            # A transition has a bug: nothing was written; apply each alone so it fails only its own caller.
            log.warning("a combined write of batch %s failed; applying its %d writes alone", batch_id, len(entries))
            for entry in entries:
                await self._write(rt, batch_id, [entry])
        else:
            for entry, result in zip(entries, results, strict=True):
                _settle(entry.future, result=result)


def _settle(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # its caller was cancelled; the write itself happened (or failed) all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
