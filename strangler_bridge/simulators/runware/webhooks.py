"""Webhook delivery as Runware's docs describe it: one POST per completed item to the task's ``webhookURL``;
anything but a 2xx answer (or no answer within ``webhook_timeout_s``) is a failed attempt, retried after 0.25 s,
doubling to at most 8 s, plus jitter, for at most ``webhook_attempts`` attempts (Runware does not publish its
limit; the knobs speed this up for tests).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx

from strangler_bridge.simulators.runware.config import RunwareSimConfig
from strangler_bridge.simulators.runware.state import Counters


class WebhookSender:
    """Delivers webhooks in background tasks and counts attempts, deliveries and give-ups."""

    def __init__(
        self, config: Callable[[], RunwareSimConfig], rng: random.Random, counters: Callable[[], Counters]
    ) -> None:
        self._config = config
        self._rng = rng
        self._counters = counters
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the HTTP client (inside the server's event loop)."""
        self._http = httpx.AsyncClient(headers={"User-Agent": "Runware-Webhook-Simulator"})

    async def stop(self) -> None:
        """Cancel deliveries in progress and close the client."""
        self.cancel_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def cancel_all(self) -> None:
        """Cancel deliveries in progress (for a reset)."""
        for task in self._tasks:
            task.cancel()

    def send(self, url: str, item: dict[str, Any]) -> None:
        """Schedule the webhook of one completed item (a result, or an error with ``status: error``)."""
        config = self._config()
        if config.webhook_wrap_data:
            payload = {"errors": [item]} if item.get("status") == "error" else {"data": [item]}
        else:
            payload = item
        task = asyncio.get_running_loop().create_task(self._deliver(url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        counters = self._counters()
        config = self._config()
        delay = config.webhook_initial_s
        for attempt in range(1, config.webhook_attempts + 1):
            counters.webhook_attempts += 1
            if await self._post(url, payload, config.webhook_timeout_s):
                counters.webhooks_delivered += 1
                return
            if attempt < config.webhook_attempts:
                await asyncio.sleep(delay + self._rng.uniform(0, delay / 2))
                delay = min(delay * 2, config.webhook_max_s)
        counters.webhooks_failed += 1

    async def _post(self, url: str, payload: dict[str, Any], timeout_s: float) -> bool:
        assert self._http is not None, "WebhookSender.start() was not awaited"
        try:
            response = await self._http.post(url, json=payload, timeout=timeout_s)
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 300
