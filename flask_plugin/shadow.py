"""A small bounded pool of daemon threads for shadow work, so shadow calls never wait on the request.

Daemon threads (not a ``ThreadPoolExecutor``) so that shadow work still waiting on the service never
delays the process's exit; a bounded queue so that a slow service turns extra shadow work into skipped
comparisons instead of memory growth. Threads start on first use, in the process that uses them (safe
under pre-forking servers such as gunicorn with ``--preload``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Task = Callable[[], None]


class ShadowRunner:
    """Runs shadow tasks on ``workers`` threads with at most ``max_pending`` waiting."""

    def __init__(self, *, workers: int = 2, max_pending: int = 32) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[Task | None] = queue.Queue(max_pending)
        self._threads: list[threading.Thread] = []

    def submit(self, task: Task) -> bool:
        """Queue ``task`` without blocking; ``False`` if the queue is full (the task is dropped)."""
        self._start()
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Let queued tasks finish, then stop the threads (waiting at most ``timeout_s`` for each)."""
        with self._lock:
            threads, self._threads, self._pid = self._threads, [], None
            work = self._queue
            self._queue = queue.Queue(self.max_pending)
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join(timeout_s)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # First use, or first use after a fork: the parent's threads do not exist here.
            self._pid = os.getpid()
            self._queue = queue.Queue(self.max_pending)
            self._threads = [
                threading.Thread(target=self._work, args=(self._queue,), name=f"strangler-shadow-{n}", daemon=True)
                for n in range(self.workers)
            ]
            for thread in self._threads:
                thread.start()

    @staticmethod
    def _work(tasks: queue.Queue[Task | None]) -> None:
        while (task := tasks.get()) is not None:
            try:
                task()
            except Exception:  # a shadow task must never kill its worker
                log.exception("strangler-bridge: shadow task failed")
