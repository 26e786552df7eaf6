"""The service's metric families, and how one sample is named inside the Redis hashes that hold them.

Counters and histograms are kept in Redis so that every process (the API and any number of workers) adds
to the same numbers; see ``docs/DECISIONS.md``. A sample is one hash field whose name is a JSON list:
``[family, *label_values]`` for a counter, ``[family, *label_values, slot]`` for a histogram, where ``slot`` is
a bucket's upper bound (the smallest one holding the value, so buckets are stored non-cumulatively) or
``"sum"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

from strangler_bridge.contracts.flags import Phase

SUM = "sum"
INF = "+Inf"

#: Latency of calls that usually take tens of milliseconds to a minute.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Pipeline steps take seconds to an hour.
STEP_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: Waiting for a limiter slot is usually instant; long waits mean the limit is too low.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def bound(value: float) -> str:
    """A bucket's upper bound as written in the ``le`` label."""
    return INF if math.isinf(value) else repr(float(value))


@dataclass(frozen=True)
class Family:
    """One counter or histogram: its name (a counter's without ``_total``), help text, labels and buckets."""

    name: str
    kind: Literal["counter", "histogram"]
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = field(default=())
    #: Label values of a counter exposed even before they are counted (so rates and alerts see zeros).
    always: tuple[tuple[str, ...], ...] = field(default=())

    def sample(self, values: tuple[str, ...]) -> str:
        """The hash field of a counter sample."""
        self._check(values)
        return json.dumps([self.name, *values], separators=(",", ":"))

    def bucket(self, values: tuple[str, ...], value: float) -> str:
        """The hash field of the histogram bucket that ``value`` falls into."""
        self._check(values)
        slot = next((bound(b) for b in self.buckets if value <= b), INF)
        return json.dumps([self.name, *values, slot], separators=(",", ":"))

    def total(self, values: tuple[str, ...]) -> str:
        """The hash field holding a histogram's sum of observed values."""
        self._check(values)
        return json.dumps([self.name, *values, SUM], separators=(",", ":"))

    def _check(self, values: tuple[str, ...]) -> None:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")


HTTP_REQUESTS = Family(
    "strangler_http_requests",
    "counter",
    "HTTP requests answered, by route template and status.",
    ("method", "route", "status"),
)
HTTP_DURATION = Family(
    "strangler_http_request_duration_seconds",
    "histogram",
    "Time until the response started, by route template (long-polls included).",
    ("method", "route"),
    CALL_BUCKETS,
)
WEBHOOK_OUTCOMES = ("deferred", "rejected", "error")
WEBHOOKS = Family(
    "strangler_webhook_deliveries",
    "counter",
    "Provider webhooks received: deferred (queued for a worker, which applies it), rejected (bad token or body), "
    "error.",
    ("source", "outcome"),
    always=tuple((source, outcome) for source in ("runpod", "video") for outcome in WEBHOOK_OUTCOMES),
)
WEBHOOK_RESULTS = Family(
    "strangler_webhook_results",
    "counter",
    "Queued RunPod webhooks applied by the workers: accepted (changed state), duplicate (changed nothing), "
    "error (could not be applied; the reconciler polls instead).",
    ("source", "outcome"),
    always=tuple(("runpod", outcome) for outcome in ("accepted", "duplicate", "error")),
)
PROVIDER_CALLS = Family(
    "strangler_provider_calls",
    "counter",
    "Calls to RunPod, Runware and the video service, after retries, by outcome (ok or the error kind).",
    ("provider", "operation", "outcome"),
)
PROVIDER_LATENCY = Family(
    "strangler_provider_call_duration_seconds",
    "histogram",
    "Duration of provider calls, retries included.",
    ("provider", "operation"),
    CALL_BUCKETS,
)
STEP_DURATION = Family(
    "strangler_step_duration_seconds",
    "histogram",
    "Duration of finished pipeline steps (each attempt counted once), by step and result.",
    ("step", "status"),
    STEP_BUCKETS,
)
LIMITER_WAIT = Family(
    "strangler_limiter_wait_seconds",
    "histogram",
    "Time spent waiting for a slot of a cluster-wide provider limiter.",
    ("limiter",),
    WAIT_BUCKETS,
)
TERMINAL_FAILURES = Family(
    "strangler_terminal_failures",
    "counter",
    "Batches (a pipeline step's, or created through the API) that failed for good, by phase and reason code: "
    "rejected, unusable_output, missing_output, provider_failed, attempts_exhausted, unreachable, deadline "
    "(and builder_failed for segments).",
    ("phase", "reason"),
)
PROVIDER_COST = Family(
    "strangler_provider_cost_usd",
    "counter",
    "What provider work cost (USD), as reported (Runware, the video service) or priced from RunPod's "
    "executionTime and STRANGLER_RUNPOD_USD_PER_S.",
    ("provider",),
    always=(("runpod",), ("runware",), ("video",)),
)
REUSED_ITEMS = Family(
    "strangler_reused_items",
    "counter",
    "Chunks and images completed from identical work already made (or in flight) instead of a provider call.",
    ("phase",),
    always=(("tts",), ("imagegen",)),
)
REUSE_COST_SAVED = Family(
    "strangler_reuse_cost_saved_usd",
    "counter",
    "Provider cost (USD) the reused items had when first made: what reuse saved.",
    ("phase",),
    always=(("tts",), ("imagegen",)),
)
CALLBACK_OUTCOMES = ("delivered", "retry", "failed")
CALLBACK_ATTEMPTS = Family(
    "strangler_callback_attempts",
    "counter",
    "Completion webhook attempts, by outcome: delivered (a 2xx), retry (not taken; sent again later), failed "
    "(not taken and the retry schedule is used up, or the callback_url is refused).",
    ("outcome",),
    always=tuple((outcome,) for outcome in CALLBACK_OUTCOMES),
)
CALLBACK_LATENCY = Family(
    "strangler_callback_attempt_duration_seconds",
    "histogram",
    "Duration of completion webhook attempts (the receiver's answer time).",
    (),
    CALL_BUCKETS,
)
BRIDGE_EVENT_KINDS = ("service", "fallback", "shadow_match", "shadow_mismatch", "shadow_error", "shadow_skipped")
BRIDGE_EVENTS = Family(
    "strangler_bridge_events",
    "counter",
    "Outcomes of routed calls reported by the Flask side: service, fallback, shadow_match, shadow_mismatch, "
    "shadow_error, shadow_skipped.",
    ("phase", "kind"),
    always=tuple((phase.value, kind) for phase in Phase for kind in BRIDGE_EVENT_KINDS),
)
BRIDGE_EVENTS_DROPPED = Family(
    "strangler_bridge_events_dropped",
    "counter",
    "Events the Flask side dropped (oldest first) because its buffer filled while the service was unreachable.",
    (),
    always=((),),
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        HTTP_REQUESTS,
        HTTP_DURATION,
        WEBHOOKS,
        WEBHOOK_RESULTS,
        PROVIDER_CALLS,
        PROVIDER_LATENCY,
        STEP_DURATION,
        LIMITER_WAIT,
        TERMINAL_FAILURES,
        PROVIDER_COST,
        REUSED_ITEMS,
        REUSE_COST_SAVED,
        CALLBACK_ATTEMPTS,
        CALLBACK_LATENCY,
        BRIDGE_EVENTS,
        BRIDGE_EVENTS_DROPPED,
    )
}


def parse_field(raw: bytes | str) -> tuple[Family, tuple[str, ...], str | None] | None:
    """``(family, label values, slot)`` of a stored field (``slot`` is ``None`` for counters); ``None`` if unknown.

    Fields of families that no longer exist, or whose labels changed, are skipped rather than failing a scrape.
    """
    try:
        parts = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        return None
    family = FAMILIES.get(parts[0])
    if family is None:
        return None
    width = len(family.labels)
    if family.kind == "counter":
        return (family, tuple(parts[1:]), None) if len(parts) == width + 1 else None
    if len(parts) != width + 2:
        return None
    return family, tuple(parts[1 : width + 1]), parts[-1]


def bucket_bounds(family: Family) -> list[str]:
    """A histogram's bucket bounds as exposed (``+Inf`` last)."""
    return [bound(b) for b in family.buckets if not math.isinf(b)] + [INF]
