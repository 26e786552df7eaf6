"""What a service process needs at run time, built from settings once (in a lifespan or a worker's start-up)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from fastapi_app.store.batch import Batch
from fastapi_app.store.docstore import DocStore
from fastapi_app.store.job import JobRecord
from fastapi_app.store.outbox import Outbox
from strangler_bridge.artifacts import ArtifactStore, open_store
from strangler_bridge.keys import Keys
from strangler_bridge.settings import Settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from strangler_bridge.providers.runpod.client import RunPodClient
    from strangler_bridge.providers.video.client import VideoClient


@dataclass
class Runtime:
    """Settings plus the clients built from them. Close it when the process stops."""

    settings: Settings
    redis: redis.Redis
    aredis: aredis.Redis
    batches: DocStore[Batch]
    jobs: DocStore[JobRecord]
    outbox: Outbox
    artifacts: ArtifactStore
    http: httpx.Client
    _runpod: RunPodClient | None = field(default=None, repr=False)
    _video: VideoClient | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Create the clients (no connection is made until first use)."""
        settings.require("redis_url", "webhook_secret")
        url = settings.redis_url or ""
        # Short timeouts so an outage answers 503 quickly instead of hanging requests.
        client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=15)
        keys = Keys(settings.redis_prefix)
        # An owed webhook outlives its whole retry schedule, and then stays readable as long as a record.
        outbox = Outbox(client, keys, settings.record_ttl_s + int(sum(settings.callback_retry_s)) + 3600)
        return cls(
            settings=settings,
            redis=client,
            aredis=aredis.Redis.from_url(
                url,
                socket_timeout=5.0,
                socket_connect_timeout=2.0,
                health_check_interval=15,
                # The async pool hands out connections a Redis restart has closed (the sync pool checks them):
                # retry a refused or closed connection, never a timeout (the command may have run).
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(redis.ConnectionError,)),
            ),
            batches=DocStore(client, keys, "batch", Batch, settings.record_ttl_s, outbox=outbox),
            jobs=DocStore(client, keys, "job", JobRecord, settings.record_ttl_s, outbox=outbox),
            outbox=outbox,
            artifacts=open_store(settings),
            http=httpx.Client(timeout=settings.http_timeout_s),
        )

    def warn_if_evicting(self) -> None:
        """Log a warning if Redis may evict keys: an evicted record or queue loses work silently."""
        try:
            policy = self.redis.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.RedisError:
            return  # unreachable, or CONFIG is disabled (managed Redis): readiness reports the former
        if policy not in (None, "noeviction", b"noeviction"):
            log.warning(
                "Redis maxmemory-policy is %r: set it to noeviction, or records and queued work may vanish", policy
            )

    @property
    def keys(self) -> Keys:
        """The names of every Redis key of this deployment."""
        return self.batches.keys

    @property
    def runpod(self) -> RunPodClient:
        """The RunPod client (built on first use, so a service without phase 1 configured still starts)."""
        if self._runpod is None:
            from strangler_bridge.providers.runpod.client import RunPodClient

            self._runpod = RunPodClient.from_settings(self.settings)
        return self._runpod

    @property
    def video(self) -> VideoClient:
        """The video-service client (built on first use)."""
        if self._video is None:
            from strangler_bridge.providers.video.client import VideoClient

            self._video = VideoClient.from_settings(self.settings)
        return self._video

    def close(self) -> None:
        """Release sync resources."""
        self.http.close()
        for client in (self._runpod, self._video):
            if client is not None:
                client.close()
        self.redis.close()

    async def aclose(self) -> None:
        """Release every resource."""
        await self.aredis.aclose()
        self.close()


_process_runtime: list[Runtime] = []


def install_runtime(rt: Runtime) -> None:
    """Make ``rt`` the runtime that task functions in this process use."""
    _process_runtime[:] = [rt]


def worker_runtime() -> Runtime:
    """The runtime of this worker process (installed by the worker, else built from the environment once)."""
    if not _process_runtime:
        install_runtime(Runtime.build(Settings.load()))
    return _process_runtime[0]
