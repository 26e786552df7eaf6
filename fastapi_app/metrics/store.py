"""Counters and histograms in Redis, shared by every process of a deployment.

Workers add to Redis at once (:func:`record`): their increments ride along the Redis work they do anyway.
The API adds to an in-process :class:`MetricBuffer` (one dict update per request) that is flushed to Redis
every second and before each scrape, so counting requests costs no Redis round trip per request.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping

import redis
import redis.asyncio as aredis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from fastapi_app.metrics.families import FAMILIES, SUM, Family, bucket_bounds, parse_field
from strangler_bridge.keys import Keys

log = logging.getLogger(__name__)


class Increments:
    """Pending additions to the two hashes."""

    def __init__(self) -> None:
        self.counters: dict[str, float] = defaultdict(float)
        self.histograms: dict[str, float] = defaultdict(float)

    def inc(self, family: Family, values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add ``amount`` to a counter."""
        self.counters[family.sample(values)] += amount

    def observe(self, family: Family, values: tuple[str, ...], value: float) -> None:
        """Count one observation of ``value`` in a histogram."""
        value = max(0.0, value)
        self.histograms[family.bucket(values, value)] += 1
        self.histograms[family.total(values)] += value

    def __bool__(self) -> bool:
        return bool(self.counters or self.histograms)

    def queue(self, pipe: redis.client.Pipeline | aredis.client.Pipeline, keys: Keys) -> None:
        """Queue the additions on a Redis pipeline."""
        for name, amount in self.counters.items():
            pipe.hincrbyfloat(keys.counters, name, amount)
        for name, amount in self.histograms.items():
            pipe.hincrbyfloat(keys.histograms, name, amount)

    def merge(self, other: Increments) -> None:
        """Add another set of increments to this one."""
        for name, amount in other.counters.items():
            self.counters[name] += amount
        for name, amount in other.histograms.items():
            self.histograms[name] += amount


def record(client: redis.Redis, keys: Keys, increments: Increments) -> None:
    """Write increments now (workers). Metrics never break the work: a Redis error is logged and dropped."""
    if not increments:
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            increments.queue(pipe, keys)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics not recorded: redis unavailable (%s)", type(exc).__name__)


class MetricBuffer:
    """Increments kept in this process until :meth:`flush` (the API process)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._pending = Increments()
        self._lock = threading.Lock()  # the events route may record from the thread pool

    def inc(self, family: Family, values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add to a counter."""
        with self._lock:
            self._pending.inc(family, values, amount)

    def observe(self, family: Family, values: tuple[str, ...], value: float) -> None:
        """Count an observation in a histogram."""
        with self._lock:
            self._pending.observe(family, values, value)

    async def flush(self, client: aredis.Redis) -> None:
        """Move what is pending to Redis; on failure it stays pending for the next flush."""
        with self._lock:
            pending, self._pending = self._pending, Increments()
        if not pending:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                pending.queue(pipe, self.keys)
                await pipe.execute()
        except redis.RedisError:
            with self._lock:
                pending.merge(self._pending)
                self._pending = pending
            raise


def stored_families(client: redis.Redis, keys: Keys) -> list[Metric]:
    """Every counter and histogram family with the samples stored in Redis (families without samples too)."""
    counters = client.hgetall(keys.counters)
    histograms = client.hgetall(keys.histograms)
    counter_families = {
        f.name: CounterMetricFamily(f.name, f.help, labels=f.labels) for f in FAMILIES.values() if f.kind == "counter"
    }
    histogram_families = {
        f.name: HistogramMetricFamily(f.name, f.help, labels=f.labels)
        for f in FAMILIES.values()
        if f.kind == "histogram"
    }
    counted: dict[tuple[str, tuple[str, ...]], float] = {
        (family.name, values): 0.0 for family in FAMILIES.values() for values in family.always
    }
    for raw, value in counters.items():
        parsed = parse_field(raw)
        if parsed is not None and parsed[2] is None:
            counted[(parsed[0].name, parsed[1])] = float(value)
    for (name, values), total in sorted(counted.items()):
        counter_families[name].add_metric(list(values), total)
    for family, values, buckets, total in _histograms(histograms):
        histogram_families[family.name].add_metric(list(values), buckets, total)
    return [*counter_families.values(), *histogram_families.values()]


def _histograms(
    fields: Mapping[bytes | str, bytes | str],
) -> Iterator[tuple[Family, tuple[str, ...], list[tuple[str, float]], float]]:
    """Group stored bucket fields into cumulative histograms."""
    grouped: dict[tuple[str, tuple[str, ...]], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for raw, value in fields.items():
        parsed = parse_field(raw)
        if parsed is None:
            continue
        family, values, slot = parsed
        if slot is not None:
            grouped[(family.name, values)][slot] += float(value)
    for (name, values), slots in sorted(grouped.items()):
        family = FAMILIES[name]
        running = 0.0
        buckets = []
        for bound in bucket_bounds(family):
            running += slots.get(bound, 0.0)
            buckets.append((bound, running))
        yield family, values, buckets, slots.get(SUM, 0.0)
