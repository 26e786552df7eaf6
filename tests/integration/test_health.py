"""Liveness and readiness against a real Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fastapi_app import create_app
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.errors import ConfigError
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration


def test_ready_when_redis_answers(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["redis"] == "ok"


def test_not_ready_when_redis_is_unreachable(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(dead)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"


def test_app_factory_names_missing_redis() -> None:
    with pytest.raises(ConfigError, match="STRANGLER_REDIS_URL"):
        create_app(Settings.load(redis_url=None))


def test_warns_when_redis_may_evict_keys(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    import redis

    from fastapi_app.runtime import Runtime
    from strangler_bridge.cli.redis_server import RedisServer

    server = RedisServer().start()  # our own server: we may change its configuration
    try:
        client = redis.Redis.from_url(server.url)
        runtime = Runtime.build(settings.model_copy(update={"redis_url": server.url}))
        with caplog.at_level("WARNING", logger="fastapi_app.runtime"):
            runtime.warn_if_evicting()
            assert not caplog.records
            client.config_set("maxmemory-policy", "allkeys-lru")
            runtime.warn_if_evicting()
        assert "noeviction" in caplog.records[0].getMessage()
        runtime.close()
        client.close()
    finally:
        server.close()
