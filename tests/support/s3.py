"""A real S3 API for tests: moto's server mode in a child process on loopback, and a proxy that injects faults.

moto cannot inject faults itself, so :class:`FaultyProxy` sits in front of it: it answers the next ``fail_next``
requests with 503 and holds the next ``delay_next`` ones for ``delay_s`` (then answers 504), and forwards the
rest unchanged. Both counts are bounded, so a client that retries gets through.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from strangler_bridge.cli.processes import wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer

#: What boto3 in the tests and in the stack's child processes uses: moto accepts any key unless told not to.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class MotoServer:
    """``python -m moto.server`` on a free loopback port; ``auth=True`` makes it refuse unknown credentials."""

    def __init__(self, log_path: Path, *, auth: bool = False) -> None:
        self.port = free_port()
        env = {**os.environ, **AWS_ENV}
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http_ok(f"{self.url}/moto-api/data.json", timeout=30)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """The endpoint URL (``STRANGLER_S3_ENDPOINT_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def s3_client(endpoint_url: str) -> Any:
    """A plain boto3 client of the test server (to create buckets and look at objects behind the store's back)."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=endpoint_url)


def new_bucket(endpoint_url: str) -> str:
    """Create a bucket with a unique name and return the name."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint_url).create_bucket(Bucket=name)
    return name


def object_names(endpoint_url: str, bucket: str) -> list[str]:
    """Every object name in ``bucket``."""
    pages = s3_client(endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@dataclass
class Faults:
    """What the proxy does to the next requests, and what it has done."""

    fail_next: int = 0
    delay_next: int = 0
    delay_s: float = 0.0
    failed: int = 0
    delayed: int = 0
    forwarded: int = 0


class FaultyProxy:
    """A loopback HTTP proxy in front of ``target`` that injects bounded 503s and slow answers."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.faults = Faults()
        self._server = ThreadedServer(_Asgi(self))

    @property
    def url(self) -> str:
        """The proxy's endpoint URL."""
        return self._server.url

    def start(self) -> FaultyProxy:
        """Start serving."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer one request: a fault while any are left, else moto's answer."""
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        faults = self.faults
        if faults.fail_next > 0:
            faults.fail_next -= 1
            faults.failed += 1
            await _answer(send, 503, b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>", [])
            return
        if faults.delay_next > 0:
            faults.delay_next -= 1
            faults.delayed += 1
            await asyncio.sleep(faults.delay_s)
            await _answer(send, 504, b"", [])
            return
        faults.forwarded += 1
        query = scope["query_string"].decode()
        url = self.target + scope["raw_path"].decode() + (f"?{query}" if query else "")
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.request(scope["method"], url, headers=headers, content=body)
        dropped = {"transfer-encoding", "connection", "content-encoding"}
        if scope["method"] != "HEAD":  # a HEAD's length is the object's, not its (empty) body's
            dropped.add("content-length")
        passed = [(k.encode(), v.encode()) for k, v in response.headers.multi_items() if k.lower() not in dropped]
        await _answer(send, response.status_code, response.content, passed)


class _Asgi:
    """The proxy as an ASGI 3 app (uvicorn takes a bound method for an ASGI 2 one)."""

    def __init__(self, proxy: FaultyProxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.proxy.handle(scope, receive, send)


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    if not any(k == b"content-length" for k, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
