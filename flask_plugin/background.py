"""One background thread per helper, started on first use and again in a forked child."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class BackgroundThread:
    """A daemon thread running ``target``: :meth:`ensure` starts it when it is not running in this process.

    A forked child (gunicorn with preload) inherits the helper's state but not its thread, so it starts its own.
    Callers serialise :meth:`ensure` with their own lock.
    """

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self._name = name
        self._thread: threading.Thread | None = None
        self._pid = 0

    def ensure(self) -> None:
        """Start the thread unless it runs in this process."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._target, name=self._name, daemon=True)
            self._thread.start()

    def started_here(self) -> bool:
        """Whether the thread was started in this process (a forked child's inherited one does not count)."""
        return self._thread is not None and self._pid == os.getpid()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for this process's thread to end."""
        thread = self._thread if self.started_here() else None
        if thread is not None:
            thread.join(timeout_s)
