"""Webhook delivery as RunPod does it: one POST per terminal job with the status object plus ``input`` and
``webhook``; a non-2xx answer, a transport error or an answer slower than the timeout is a failed attempt, and
RunPod tries up to ``webhook_retries`` more times, ``webhook_retry_delay_s`` apart. The faults of
:class:`~strangler_bridge.simulators.runpod.config.WebhookFaults` are applied here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from strangler_bridge.audio import tone_wav
from strangler_bridge.simulators.runpod.config import RunPodSimConfig, sample


@dataclass(frozen=True)
class Delivery:
    """One webhook to deliver (a duplicate is a second Delivery of the same payload)."""

    url: str
    body: bytes


class WebhookSender:
    """Delivers webhooks in background tasks; counts attempts, deliveries, failures and faults."""

    def __init__(self, config: Callable[[], RunPodSimConfig], rng: random.Random, counters: Counter[str]) -> None:
        self._config = config
        self._rng = rng
        self.counters = counters
        self._held: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the HTTP client (inside the server's event loop)."""
        self._http = httpx.AsyncClient(headers={"User-Agent": "RunPod-Webhook-Simulator"})

    async def stop(self) -> None:
        """Cancel pending deliveries and close the client."""
        self.cancel_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def cancel_all(self) -> None:
        """Drop held webhooks and cancel deliveries in flight (for a reset)."""
        self._held.clear()
        for task in self._tasks:
            task.cancel()

    @property
    def pending(self) -> int:
        """Webhooks held for reordering or still being delivered."""
        return len(self._held) + len(self._tasks)

    def send(self, url: str, payload: dict[str, Any]) -> None:
        """Schedule the webhook of a finished job, applying the configured faults."""
        faults = self._config().webhook_faults
        if self._rng.random() < faults.lost_rate:
            self.counters["lost"] += 1
            return
        body = json.dumps(payload).encode()
        copies = 1 + faults.duplicates
        self.counters["duplicated"] += faults.duplicates
        for copy in range(copies):
            if copy and faults.differing_duplicates:
                body = json.dumps(_differing(payload, copy)).encode()
                self.counters["differing"] += 1
            delivery = Delivery(url, body)
            if faults.reorder == "none":
                self._spawn(self._deliver(delivery))
                continue
            self._held.append(delivery)
            self.counters["held"] += 1
            if len(self._held) >= faults.reorder_batch:
                self.release()

    def release(self) -> int:
        """Send every held webhook now, in the configured reordering; returns how many were released."""
        held, self._held = self._held, []
        if self._config().webhook_faults.reorder == "shuffle":
            self._rng.shuffle(held)
        else:
            held.reverse()
        if held:
            self._spawn(self._deliver_in_order(held))
        return len(held)

    async def _deliver_in_order(self, deliveries: list[Delivery]) -> None:
        # One after the other, so the receiver sees exactly the reordered sequence.
        for delivery in deliveries:
            await self._deliver(delivery)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        config = self._config()
        await asyncio.sleep(sample(self._rng, config.webhook_faults.extra_delay_s))
        attempts = 1 + config.webhook_retries
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(config.webhook_retry_delay_s)
            if await self._attempt(delivery, config):
                self.counters["delivered"] += 1
                return
        self.counters["gave_up"] += 1

    async def _attempt(self, delivery: Delivery, config: RunPodSimConfig) -> bool:
        assert self._http is not None, "WebhookSender.start() was not awaited"
        empty = self._rng.random() < config.webhook_faults.empty_body_rate
        self.counters["attempts"] += 1
        self.counters["empty_bodies"] += int(empty)
        try:
            response = await self._http.post(
                delivery.url,
                content=b"" if empty else delivery.body,
                headers={"Content-Type": "application/json"},
                timeout=config.webhook_timeout_s,
            )
        except httpx.HTTPError:
            self.counters["failed_attempts"] += 1
            return False
        ok = response.status_code == 200 if config.webhook_strict_200 else response.is_success
        self.counters["failed_attempts"] += int(not ok)
        return ok


def _differing(payload: dict[str, Any], copy: int) -> dict[str, Any]:
    """The payload with every base64 chunk's audio made anew, ``copy`` halves longer (a re-run's different take)."""
    output = payload.get("output")
    chunks = output.get("chunks") if isinstance(output, dict) else None
    if not isinstance(output, dict) or not isinstance(chunks, list):
        return payload
    changed = []
    for chunk in chunks:
        if isinstance(chunk, dict) and chunk.get("audio_base64") and isinstance(chunk.get("duration_s"), (int, float)):
            duration = round(float(chunk["duration_s"]) * (1 + 0.5 * copy), 3)
            audio = base64.b64encode(tone_wav(duration, frequency=330.0)).decode("ascii")
            changed.append({**chunk, "audio_base64": audio, "duration_s": duration})
        else:
            changed.append(chunk)
    return {**payload, "output": {**output, "chunks": changed}}
