"""Shared fixtures: a private Redis, per-test settings and key prefix, worker and API processes."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strangler_bridge.settings import Settings

TEST_TOKEN = "test-token-1"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL for the test session: ``STRANGLER_TEST_REDIS_URL`` if given, else a private redis-server.

    Tests never flush a server they did not start: each test works under its own key prefix.
    """
    given = os.environ.get("STRANGLER_TEST_REDIS_URL")
    if given:
        yield given
        return
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server on PATH and STRANGLER_TEST_REDIS_URL not set")
    from strangler_bridge.cli.redis_server import RedisServer

    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a real S3 API (moto's server mode) for the session; AWS credentials in the environment."""
    pytest.importorskip("moto.server")
    from tests.support.s3 import AWS_ENV, MotoServer

    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str) -> Settings:
    """:func:`settings` with artifacts in a new bucket of the session's S3 server, under a prefix."""
    from tests.support.s3 import new_bucket

    url = f"s3://{new_bucket(s3_endpoint)}/artifacts"
    return settings.model_copy(update={"artifacts_url": url, "s3_endpoint_url": s3_endpoint})


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own Redis key prefix and artifact directory."""
    return Settings.load(
        redis_url=redis_url,
        redis_prefix=f"t{uuid.uuid4().hex[:12]}",
        artifacts_dir=tmp_path / "artifacts",
        api_tokens=[TEST_TOKEN],
        webhook_secret="test-webhook-secret",
    )


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[object]:
    """A sync Redis client; deletes this test's keys afterwards."""
    import redis

    client = redis.Redis.from_url(settings.redis_url or "")
    yield client
    for key in client.scan_iter(f"{settings.redis_prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start child processes (``strangler-bridge <args>``) that are stopped after the test."""
    from strangler_bridge.cli.processes import Child

    started: list[Child] = []

    def start(args: list[str], settings: Settings, extra_env: dict[str, str] | None = None) -> Child:
        log = tmp_path / f"{args[0]}-{len(started)}.log"
        child = Child(args, settings, log, extra_env)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``STRANGLER_*`` variable of the machine running the tests reaches the settings a test builds."""
    for key in list(os.environ):
        if key.startswith("STRANGLER_"):
            monkeypatch.delenv(key)
