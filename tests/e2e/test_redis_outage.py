"""Redis outages: the API answers 503 with a clear error while Redis is down and recovers by itself; workers reconnect.

Each test owns its redis-server (append-only), so it can stop and start it without touching anyone else's data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.cli.redis_server import RedisServer
from strangler_bridge.settings import Settings
from tests.support.stack import create, follow, tts_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True).start()
    yield server
    server.close()


@pytest.fixture
def stack(settings: Settings, redis_server: RedisServer, tmp_path: Path) -> Iterator[DevStack]:
    base = settings.model_copy(
        update={"redis_url": redis_server.url, "reconcile_after_s": 1.5, "reconcile_interval_s": 0.2}
    )
    runpod = {"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05}
    with DevStack(base, workers=1, runpod=runpod, log_dir=tmp_path / "stack") as started:
        yield started


def _answers(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    return client.request(method, path, **kwargs)  # type: ignore[arg-type]


def test_api_answers_503_with_a_clear_error_while_redis_is_down_and_recovers(
    stack: DevStack, redis_server: RedisServer
) -> None:
    created = create(stack, "/tts/batch", tts_body(2))
    redis_server.stop()
    with stack.client(timeout_s=20) as client:
        calls = [
            ("GET", f"/tts/batch/{created['id']}", {}),
            ("GET", f"/tts/batch/{created['id']}", {"params": {"wait": 2}}),
            ("POST", "/tts/batch", {"json": tts_body(1)}),
            ("POST", "/jobs", {"json": {"chunks": [{"text": "Hello there."}]}}),
            ("GET", "/flags", {}),
            ("GET", "/jobs", {}),
        ]
        for method, path, kwargs in calls:
            response = _answers(client, method, path, **kwargs)
            assert response.status_code == 503, (method, path, response.text)
            assert response.json()["error"]["code"] == "store_unavailable", response.text
            assert "Traceback" not in response.text and "redis.exceptions" not in response.text
            assert response.headers.get("retry-after") == "1"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert client.get("/healthz").status_code == 200  # the process itself is alive
        redis_server.start()
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=20, what="readiness after the outage")
        assert client.get(f"/tts/batch/{created['id']}").status_code == 200
        status = follow(client, f"/tts/batch/{created['id']}", timeout=60)
    assert status["status"] == "completed", status


def test_workers_reconnect_after_redis_restarts(stack: DevStack, redis_server: RedisServer) -> None:
    worker = stack.workers[0]
    wait_for(lambda: "Listening on" in worker.output(), timeout=20, what="the worker to start")
    redis_server.stop()
    wait_for(lambda: "redis" in worker.output().lower(), timeout=20, what="the worker to notice the outage")
    redis_server.start()
    created = create(stack, "/tts/batch", tts_body(4))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}", timeout=60)
    assert status["status"] == "completed", (status, worker.output()[-3000:])
    assert worker.alive(), worker.output()[-3000:]
