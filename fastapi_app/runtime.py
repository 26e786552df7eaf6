"""What a service process needs at run time, built from settings once (in a lifespan or a worker's start-up)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio as aredis

from strangler_bridge.settings import Settings


@dataclass
class Runtime:
    """Settings plus the clients built from them. Close it when the process stops."""

    settings: Settings
    redis: redis.Redis
    aredis: aredis.Redis

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Create the Redis clients (no connection is made until first use)."""
        settings.require("redis_url")
        url = settings.redis_url or ""
        # Short timeouts so an outage answers 503 quickly instead of hanging requests.
        return cls(
            settings=settings,
            redis=redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=15),
            aredis=aredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=15),
        )

    def key(self, *parts: object) -> str:
        """A Redis key under the configured prefix."""
        return ":".join((self.settings.redis_prefix, *map(str, parts)))

    async def aclose(self) -> None:
        """Release connections."""
        await self.aredis.aclose()
        self.redis.close()
