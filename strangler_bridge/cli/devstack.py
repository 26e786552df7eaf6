"""The whole service on one machine: Redis, the three simulators, the API and workers.

Used by ``strangler-bridge demo``, the benchmarks and the end-to-end tests, so they all run the same thing:
the simulators are served in this process (threads), the API and workers are child processes started with
the same settings, and everything talks over real HTTP on loopback.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr

from strangler_bridge.callbacks import new_secret
from strangler_bridge.cli.processes import Child, wait_http_ok
from strangler_bridge.cli.redis_server import free_port, redis_for_dev
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.settings import Settings

SIM_KEY = "sim-key"


class DevStack:
    """Start with :meth:`start` (or ``with``); every process and server is stopped by :meth:`stop`."""

    def __init__(
        self,
        base: Settings,
        *,
        workers: int = 1,
        runpod: dict[str, Any] | None = None,
        runware: dict[str, Any] | None = None,
        video: dict[str, Any] | None = None,
        log_dir: Path | None = None,
        api_port: int | None = None,
        runpod_url: str | None = None,
        process_env: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        """``runpod_url``: a RunPod endpoint to use instead of the simulator (e.g. the SDK's local test API).

        ``process_env``: extra environment of each child process, by its name (``api-1``, ``worker-2``, ...), to
        give each one its own directories as if on its own machine.
        """
        self.process_env = process_env
        self.base = base
        self.runpod_url = runpod_url
        self.worker_count = workers
        self.knobs = {"runpod": runpod or {}, "runware": runware or {}, "video": video or {}}
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="strangler-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.servers: dict[str, ThreadedServer] = {}
        self.api: Child | None = None
        self.workers: list[Child] = []
        self.settings = base
        self.api_port = api_port or free_port()
        self._exit = contextlib.ExitStack()
        self._children = 0

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> DevStack:
        """Start Redis (embedded if none is configured), the simulators, the API and the workers."""
        try:
            redis_url = self._exit.enter_context(redis_for_dev(self.base))
            self._start_simulators()
            self._start_api_on_a_free_port(redis_url)
            for _ in range(self.worker_count):
                self.add_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_simulators(self) -> None:
        from strangler_bridge.simulators.runpod.app import create_app as runpod_app
        from strangler_bridge.simulators.runpod.config import RunPodSimConfig
        from strangler_bridge.simulators.runware.app import create_app as runware_app
        from strangler_bridge.simulators.runware.config import RunwareSimConfig
        from strangler_bridge.simulators.video.app import create_app as video_app
        from strangler_bridge.simulators.video.config import VideoSimConfig

        apps = {
            "runpod": runpod_app(RunPodSimConfig.model_validate({"api_key": SIM_KEY, **self.knobs["runpod"]})),
            "runware": runware_app(RunwareSimConfig.model_validate({"api_key": SIM_KEY, **self.knobs["runware"]})),
            "video": video_app(VideoSimConfig.model_validate(self.knobs["video"])),
        }
        for name, app in apps.items():
            self.servers[name] = ThreadedServer(app).start()

    def _settings(self, redis_url: str) -> Settings:
        base = self.base
        update: dict[str, Any] = {
            "redis_url": redis_url,
            "public_url": f"http://127.0.0.1:{self.api_port}",
            "runpod_endpoint_url": self.runpod_url or f"{self.servers['runpod'].url}/v2/sim",
            "runpod_api_key": SecretStr(SIM_KEY),
            "runware_url": f"{self.servers['runware'].url}/v1",
            "runware_api_key": SecretStr(SIM_KEY),
            "video_url": self.servers["video"].url,
            "fetch_allow_hosts": sorted({*base.fetch_allow_hosts, "127.0.0.1"}),
            # Completion webhooks go to receivers on this machine (the example app, a test's receiver).
            "callback_allow_hosts": sorted({*base.callback_allow_hosts, "127.0.0.1", "localhost"}),
        }
        if not base.api_tokens:
            update["api_tokens"] = [SecretStr(secrets.token_urlsafe(24))]
        if base.webhook_secret is None:
            update["webhook_secret"] = SecretStr(secrets.token_urlsafe(32))
        if not base.callback_secret:
            update["callback_secret"] = [SecretStr(new_secret())]
        return base.model_copy(update=update)

    def _child(self, args: list[str]) -> Child:
        self._children += 1
        name = f"{args[0]}-{self._children}"
        extra = self.process_env(name) if self.process_env else None
        return Child(args, self.settings, self.log_dir / f"{name}.log", extra)

    def _start_api_on_a_free_port(self, redis_url: str, attempts: int = 3) -> None:
        # The port was free when chosen; another server (here or in another process) may have taken it since.
        for attempt in range(attempts):
            self.settings = self._settings(redis_url)
            try:
                self.start_api()
                return
            except RuntimeError as exc:
                if "address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
            self.api_port = free_port()

    def start_api(self) -> Child:
        """Start (or start again) the API on its fixed port and wait until it is ready."""
        self.api = self._child(["api", "--port", str(self.api_port), "--log-level", "warning"])
        wait_http_ok(f"{self.api_url}/readyz", timeout=30, child=self.api)
        return self.api

    def add_worker(self) -> Child:
        """Start one more worker process."""
        worker = self._child(["worker"])
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        """Stop every process and server this stack started (workers first, so nothing is left running)."""
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()
        for server in self.servers.values():
            server.stop()
        self._exit.close()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- use ----------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def token(self) -> str:
        """A bearer token the API accepts."""
        return self.settings.token_values()[0]

    def client(self, timeout_s: float = 70.0) -> httpx.Client:
        """An HTTP client for the API, with the bearer token."""
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout_s)

    def sim(self, name: str) -> httpx.Client:
        """An HTTP client for a simulator's control routes (``/_sim/...``)."""
        return httpx.Client(base_url=self.servers[name].url, timeout=10)

    def set_knobs(self, name: str, **knobs: Any) -> None:
        """Change a simulator's knobs at run time."""
        with self.sim(name) as client:
            client.patch("/_sim/config", json=knobs).raise_for_status()

    def counters(self, name: str) -> dict[str, Any]:
        """A simulator's counters."""
        with self.sim(name) as client:
            counters: dict[str, Any] = client.get("/_sim/counters").json()
            return counters
