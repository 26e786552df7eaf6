"""A small HTTP/1.1 load generator over keep-alive connections, run in its own process by the benchmarks.

It writes prepared request bytes and reads ``Content-Length`` answers, so it costs far less CPU per request than
an HTTP library (the server shares the machine's two cores with it). Two modes:

- closed loop: ``connections`` clients each send the next request as soon as the previous answer arrives, for
  ``duration_s`` (the most the server can do);
- open loop: requests are due at a fixed ``rate``, whatever the server does; latency is measured from when a
  request was due, so a slow server is not flattered by the generator waiting for it.

    python scripts/bench/loadgen.py SPEC.json RESULT.json

``SPEC`` is ``{"host", "port", "mode", "connections", "rate", "duration_s", "bodies": [str], "requests":
[[path, body_index], ...]}``; each request is sent at most once, in order.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


class Connection:
    """One keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        """Connect."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> int:
        """Send one request and read its whole answer; returns the status code."""
        self.writer.write(data)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


def _requests(spec: dict[str, Any]) -> list[bytes]:
    host = f"{spec['host']}:{spec['port']}"
    bodies = [body.encode() for body in spec["bodies"]]
    heads = {}
    out = []
    for path, index in spec["requests"]:
        body = bodies[index]
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(heads.setdefault(head, head.encode()) + body)
    return out


async def closed_loop(spec: dict[str, Any], requests: list[bytes]) -> dict[str, Any]:
    """Each connection sends its next request when its answer arrives."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    pending = iter(requests)
    started = time.perf_counter()
    stop_at = started + float(spec["duration_s"])

    async def client() -> None:
        conn = await Connection.open(spec["host"], int(spec["port"]))
        try:
            for data in pending:
                sent = time.perf_counter()
                if sent >= stop_at:
                    break
                statuses[await conn.send(data)] += 1
                latencies.append(time.perf_counter() - sent)
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(int(spec["connections"]))))
    return _summary(latencies, statuses, time.perf_counter() - started)


async def open_loop(spec: dict[str, Any], requests: list[bytes]) -> dict[str, Any]:
    """Requests are due every ``1 / rate`` seconds; each takes a free connection (opening one if none is free)."""
    rate = float(spec["rate"])
    count = min(len(requests), int(rate * float(spec["duration_s"])))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    idle: list[Connection] = []
    started = time.perf_counter()

    async def one(data: bytes, due: float) -> None:
        conn = idle.pop() if idle else await Connection.open(spec["host"], int(spec["port"]))
        try:
            statuses[await conn.send(data)] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            statuses[0] += 1
            conn.close()
            return
        latencies.append(time.perf_counter() - due)
        idle.append(conn)

    tasks = []
    for n in range(count):
        due = started + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(requests[n], due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    result = _summary(latencies, statuses, time.perf_counter() - started)
    result["offered_rate"] = rate
    return result


def _summary(latencies: list[float], statuses: Counter[int], elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        if not ordered:
            return float("nan")
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]

    return {
        "count": len(latencies),
        "elapsed_s": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": 1000 * ordered[-1] if ordered else float("nan"),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> None:
    """Read the spec, run it, write the result."""
    spec = json.loads(Path(sys.argv[1]).read_text())
    requests = _requests(spec)
    run = closed_loop if spec["mode"] == "closed" else open_loop
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec, requests))
    else:
        result = uvloop.run(run(spec, requests))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
