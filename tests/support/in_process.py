"""The dev stack with the API and a worker in this process (threads), for tests that must see what they do in
memory (the tracing test's in-memory span exporter): simulators as usual, the API served by uvicorn in a thread on
its loopback port, and a worker (RQ's loop and the webhook inbox) in threads."""

from __future__ import annotations

import threading
from typing import Any

from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from fastapi_app import create_app, runtime
from fastapi_app.callbacks.delivery import DeliveryThread
from fastapi_app.images import request_loop
from fastapi_app.instrumentation import instrument_worker
from fastapi_app.logs import LogContextWorker
from fastapi_app.runtime import Runtime, install_runtime
from fastapi_app.store.queues import queue
from fastapi_app.tts.webhook_inbox import InboxThread
from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.cli.processes import wait_http_ok
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.keys import QUEUES
from strangler_bridge.settings import Settings


class _ThreadRqWorker(LogContextWorker):
    """The service's RQ worker, runnable in a thread. Signals reach only the main thread, so job timeouts use a
    timer, and a stop is asked with :attr:`stopping` instead of SIGTERM (seen within a second when idle)."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()

    def _install_signal_handlers(self) -> None:
        pass

    def subscribe(self) -> None:
        pass  # no RQ command channel: its listening thread takes up to 30 s to stop, and nothing sends commands

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while not self.stopping.is_set():
            found = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=1)
            if found is not None:
                return found
        raise StopRequested  # what RQ's SIGTERM handler raises in an idle worker


class ThreadWorker:
    """One worker in threads of this process: RQ's loop, the webhook inbox and the completion-webhook delivery (no
    reconciler: nothing is late)."""

    def __init__(self, settings: Settings) -> None:
        instrument_worker()
        self.rt = Runtime.build(settings)
        install_runtime(self.rt)
        self.inbox = InboxThread(self.rt)
        self.callbacks = DeliveryThread(self.rt)
        queues = [queue(self.rt.redis, settings.redis_prefix, name) for name in QUEUES]
        self.rq = _ThreadRqWorker(queues, connection=self.rt.redis, serializer=JSONSerializer)
        self.thread = threading.Thread(
            target=self.rq.work, kwargs={"logging_level": "WARNING"}, name="rq-worker", daemon=True
        )

    def start(self) -> ThreadWorker:
        """Start applying webhooks, then running tasks."""
        self.inbox.start()
        self.inbox.caught_up.wait(10)
        self.callbacks.start()
        self.thread.start()
        return self

    def idle(self) -> bool:
        """Whether no task is queued."""
        return all(queue.count == 0 for queue in self.rq.queues)

    def stop(self) -> None:
        """Stop after the task running, if any; then the image requests, the inbox and the clients."""
        self.rq.stopping.set()
        self.thread.join(30)
        request_loop.drain()
        self.inbox.stop()
        self.callbacks.stop()
        self.callbacks.join(30)
        self.rt.close()
        runtime._process_runtime.clear()  # later tests in this process build their own


class InProcessStack(DevStack):
    """A :class:`DevStack` whose API and workers run in this process."""

    def start_api(self) -> ThreadedServer:
        """Serve the API on the stack's port in a thread and wait until it is ready."""
        self.api = ThreadedServer(create_app(self.settings), port=self.api_port).start()
        wait_http_ok(f"{self.api_url}/readyz", timeout=30)
        return self.api

    def add_worker(self) -> ThreadWorker:
        """Start one more worker in this process."""
        worker = ThreadWorker(self.settings).start()
        self.workers.append(worker)
        return worker
