"""Run an ASGI app with uvicorn in a background thread (simulators, tests, benchmarks, the demo)."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

from strangler_bridge.cli.redis_server import free_port

#: How long uvicorn keeps an idle connection open. uvicorn's default (5 s) equals httpx's idle expiry (5 s),
#: so a client could send on a connection at the moment the server closed it and get "Server disconnected
#: without sending a response" (a paid POST is then of unknown outcome). Servers must outlast their clients'
#: idle expiry; 75 s is also longer than common load balancers' idle timeout (60 s).
KEEP_ALIVE_S = 75


class ThreadedServer:
    """A uvicorn server on loopback in a daemon thread; use as a context manager."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"):
        import uvicorn

        self.host = host
        self.port = port or free_port()
        self.app = app
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level=log_level, access_log=False, timeout_keep_alive=KEEP_ALIVE_S
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> ThreadedServer:
        """Start serving and wait until the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
