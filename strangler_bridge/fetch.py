"""The one way provider outputs are downloaded: RunPod ``audio_url``, Runware ``imageURL``, the video service's video.

Every download follows the same rules:

- **scheme**: http or https only;
- **address**: the host is looked up once; every address it has must be public unless the host is listed in
  ``allow_hosts`` (``"*"`` allows any), so a provider's URL cannot make the service call its own network;
- **pinning**: the request is sent to the address that was checked, never to the name (which a second lookup
  could resolve elsewhere): the URL's host is replaced by that address while the ``Host`` header and, for https,
  the TLS server name (SNI, and so the certificate check) stay the name's;
- **redirects** are refused, not followed (the next hop would escape the checks), as is any non-2xx answer: 4xx
  (a dead link) and 3xx are :class:`ProviderRejected`, 5xx, 408, 429 and transport failures (after the retry
  policy's tries) :class:`ProviderUnavailable`;
- **size**: more than ``max_bytes`` (announced or received) is refused, and so is an empty body.

:class:`Download` runs these rules on an :class:`httpx.Client` (:meth:`~Download.stream`, :meth:`~Download.into`)
or an :class:`httpx.AsyncClient` (:meth:`~Download.ainto`); :func:`fetch_stream` and :func:`fetch_bytes` are its
shorthands. Each rule is written once, and :class:`Meter` is the one size cap (the service client's own file
downloads count through it too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit

import httpx

from strangler_bridge.errors import ProviderRejected, ProviderUnavailable
from strangler_bridge.http import RetryPolicy, asend, send

PROVIDER = "fetch"
#: Statuses that say "try later" rather than "this link is dead".
TRANSIENT_STATUSES = frozenset({408, 429})


def resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` (one lookup); :class:`ProviderUnavailable` if it has none now."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProviderUnavailable(f"cannot resolve {host}: {exc}", provider=PROVIDER) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked URL and the address it must be fetched from."""

    url: httpx.URL
    address: str

    def request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        headers: dict[str, str] | None = None,
        *,
        method: str = "GET",
        content: bytes | None = None,
    ) -> httpx.Request:
        """A request (a GET unless told) of the URL sent to :attr:`address`, presenting the URL's host name (Host
        header, TLS SNI)."""
        extensions = {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}
        pinned = self.url.copy_with(host=self.address)
        host_header = {"Host": self.url.netloc.decode("ascii").rpartition("@")[2]}
        return client.build_request(
            method, pinned, headers={**(headers or {}), **host_header}, content=content, extensions=extensions
        )


def check_url(url: str, allow_hosts: Sequence[str]) -> Target:
    """Apply the scheme and address rules to ``url``; returns the address to connect to.

    Raises :class:`ProviderRejected` for another scheme, a URL without a host, or a host with any loopback,
    link-local, private or reserved address that ``allow_hosts`` does not list (``"*"`` allows any host).
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ProviderRejected(f"not a URL: {exc}", provider=PROVIDER) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ProviderRejected(f"refusing to fetch {parsed.scheme or 'relative'} URL", provider=PROVIDER)
    host = parsed.host
    addresses = resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    if not addresses:
        raise ProviderUnavailable(f"{host} has no address", provider=PROVIDER)
    allowed = "*" in allow_hosts or host.lower() in (name.lower() for name in allow_hosts)
    if not allowed and not all(ipaddress.ip_address(address.partition("%")[0]).is_global for address in addresses):
        raise ProviderRejected(f"refusing to fetch from non-public address of {host}", provider=PROVIDER)
    return Target(parsed, addresses[0])


def check_response(response: httpx.Response, max_bytes: int) -> None:
    """Refuse a redirect, an error status, or a body announced larger than ``max_bytes`` (the body is unread)."""
    code = response.status_code
    if 300 <= code < 400:
        # The target's origin only: enough to see where it pointed, and the same for every item it happens to.
        where = urlsplit(response.headers.get("location", ""))
        origin = f" to {where.scheme}://{where.netloc}" if where.netloc else ""
        message = f"download answered a redirect (HTTP {code}{origin}): not followed"
        raise ProviderRejected(message, provider=PROVIDER, status_code=code)
    if code >= 400:
        kind = ProviderUnavailable if code >= 500 or code in TRANSIENT_STATUSES else ProviderRejected
        detail = response.text[:200] if response.is_stream_consumed else ""
        message = f"download failed with HTTP {code}" + (f": {detail}" if detail else "")
        raise kind(message, provider=PROVIDER, status_code=code)
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > max_bytes:
        raise ProviderRejected(f"output is larger than {max_bytes} bytes ({announced} announced)", provider=PROVIDER)


class Meter:
    """Counts a body as it arrives: refuses more than ``max_bytes`` in all, and (at :meth:`done`) an empty body."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.seen = 0

    def count(self, part: bytes) -> bytes:
        """``part``, once it is known not to take the body over the limit."""
        self.seen += len(part)
        if self.seen > self.max_bytes:
            raise ProviderRejected(f"output is larger than {self.max_bytes} bytes", provider=PROVIDER)
        return part

    def done(self) -> int:
        """The body's size, once it has ended; an empty body is not an output."""
        if self.seen == 0:
            raise ProviderRejected("the download is empty", provider=PROVIDER)
        return self.seen


def capped(parts: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """``parts`` passed through a :class:`Meter`."""
    meter = Meter(max_bytes)
    for part in parts:
        yield meter.count(part)
    meter.done()


def write_capped(parts: Iterable[bytes], dest: IO[bytes], meter: Meter) -> int:
    """Write ``parts`` to ``dest`` through ``meter`` (refused once over its limit); returns the bytes written."""
    for part in parts:
        dest.write(meter.count(part))
    return meter.seen


@contextmanager
def _transport_errors() -> Iterator[None]:
    """A transport failure that outlived the retry policy's tries, as :class:`ProviderUnavailable`."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"download failed: {type(exc).__name__}", provider=PROVIDER) from None


@dataclass(frozen=True)
class Download:
    """One download under the rules above, run on a sync (:meth:`stream`, :meth:`into`) or async (:meth:`ainto`)
    httpx client: the same checks, request, size cap and error mapping either way."""

    url: str
    allow_hosts: Sequence[str]
    max_bytes: int
    headers: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def stream(self, client: httpx.Client) -> Iterator[bytes]:
        """The body in parts (a large file never fills memory)."""
        target = check_url(self.url, self.allow_hosts)
        with _transport_errors():
            response = send(client, target.request(client, self.headers), self.retry, stream=True)
            try:
                check_response(response, self.max_bytes)
                yield from capped(response.iter_bytes(), self.max_bytes)
            finally:
                response.close()

    def into(self, client: httpx.Client, dest: IO[bytes]) -> int:
        """The body written to ``dest``; returns the bytes written."""
        return sum(dest.write(part) for part in self.stream(client))

    async def ainto(self, client: httpx.AsyncClient, dest: IO[bytes]) -> int:
        """:meth:`into` on an async client (the lookup runs in a thread, so the event loop never blocks on DNS)."""
        target = await asyncio.to_thread(check_url, self.url, self.allow_hosts)
        meter = Meter(self.max_bytes)
        with _transport_errors():
            response = await asend(client, target.request(client, self.headers), self.retry, stream=True)
            try:
                check_response(response, self.max_bytes)
                async for part in response.aiter_bytes():
                    dest.write(meter.count(part))
            finally:
                await response.aclose()
        return meter.done()


def fetch_stream(client: httpx.Client, url: str, *, allow_hosts: Sequence[str], max_bytes: int) -> Iterator[bytes]:
    """:meth:`Download.stream` of ``url``."""
    return Download(url, allow_hosts, max_bytes).stream(client)


def fetch_bytes(client: httpx.Client, url: str, *, allow_hosts: Sequence[str], max_bytes: int) -> bytes:
    """:meth:`Download.stream` of ``url``, joined."""
    return b"".join(Download(url, allow_hosts, max_bytes).stream(client))
