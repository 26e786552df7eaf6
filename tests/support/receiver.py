"""A completion-webhook receiver over real HTTP on loopback, whose answers a test scripts.

Each request is recorded (headers and raw body). The answer to the n-th request is ``script[n]`` (the last
entry repeats): a status code, optionally after a delay, or held until :meth:`Receiver.release` (to kill the
sender mid-delivery).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD = -1.0  # an Answer delay: hold the request until release()


@dataclass(frozen=True)
class Answer:
    """How to answer one request."""

    status: int = 204
    delay_s: float = 0.0


@dataclass
class Received:
    """One request as it arrived."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Start with :meth:`start`; ``url`` is its callback URL."""

    script: list[Answer] = field(default_factory=lambda: [Answer()])
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                    answer = receiver.script[min(len(receiver.received), len(receiver.script)) - 1]
                if answer.delay_s == HOLD:
                    receiver._released.wait(60)
                elif answer.delay_s:
                    receiver._released.wait(answer.delay_s)
                try:
                    self.send_response(answer.status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (timed out, or was killed) before the answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/done"

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["webhook-id"] for r in self.received]

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
