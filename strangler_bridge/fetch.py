"""Downloading provider outputs (audio, image URLs) safely: http(s) only, no private hosts unless allowed, capped."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from strangler_bridge.errors import ProviderRejected, ProviderUnavailable


def check_url(url: str, allow_hosts: list[str]) -> None:
    """Raise :class:`ProviderRejected` unless ``url`` is http(s) to a public host or an allowed one.

    Loopback, link-local, private and reserved addresses are refused unless the host is listed in
    ``allow_hosts`` (``"*"`` allows any): a provider's output URL must not make us call our own network.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderRejected(f"refusing to fetch {parts.scheme or 'relative'} URL", provider="fetch")
    host = parts.hostname
    if "*" in allow_hosts or host in allow_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise ProviderUnavailable(f"cannot resolve {host}: {exc}", provider="fetch") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ProviderRejected(f"refusing to fetch from non-public address of {host}", provider="fetch")


def fetch_bytes(client: httpx.Client, url: str, *, allow_hosts: list[str], max_bytes: int) -> bytes:
    """GET ``url`` (after :func:`check_url`), refusing bodies over ``max_bytes``."""
    return b"".join(_stream(client, url, allow_hosts=allow_hosts, max_bytes=max_bytes))


def fetch_stream(client: httpx.Client, url: str, *, allow_hosts: list[str], max_bytes: int) -> Iterator[bytes]:
    """Like :func:`fetch_bytes`, but yields the body in parts, so a large file can go to disk without filling memory."""
    return _stream(client, url, allow_hosts=allow_hosts, max_bytes=max_bytes)


def _stream(client: httpx.Client, url: str, *, allow_hosts: list[str], max_bytes: int) -> Iterator[bytes]:
    check_url(url, allow_hosts)
    try:
        with client.stream("GET", url, follow_redirects=False) as response:
            # Redirects are not followed (they could lead to a private host), and a 3xx body is not the output.
            if response.status_code >= 300:
                kind = ProviderUnavailable if response.status_code >= 500 else ProviderRejected
                raise kind(f"download failed with HTTP {response.status_code}", provider="fetch")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ProviderRejected(f"output is {declared} bytes, over the {max_bytes} limit", provider="fetch")
            seen = 0
            for part in response.iter_bytes():
                seen += len(part)
                if seen > max_bytes:
                    raise ProviderRejected(f"output is over the {max_bytes} byte limit", provider="fetch")
                yield part
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"download failed: {type(exc).__name__}", provider="fetch") from None
