"""The simulator's memory: renders, counters, faults, and the asyncio task that runs each render."""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from strangler_bridge.http import Operation, RetryPolicy, adrive
from strangler_bridge.providers.video.client import RenderRequest, RenderState, RenderStatus
from strangler_bridge.simulators.video import render
from strangler_bridge.simulators.video.config import VideoSimConfig

log = logging.getLogger(__name__)
FETCH_RETRY = RetryPolicy(attempts=3, initial_s=0.1, max_s=1.0, jitter_s=0.05)
_IMAGE_MAGIC = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"RIFF": ".webp", b"GIF8": ".gif", b"BM": ".bmp"}


class FetchFailed(Exception):
    """A segment's audio or image could not be downloaded."""


@dataclass
class Counters:
    """What the simulator was asked to do; ``renders_executed`` proves no render ran twice."""

    submits_total: int = 0
    renders_submitted: int = 0
    submits_replayed: int = 0
    renders_executed: dict[str, int] = field(default_factory=dict)
    renders_completed: int = 0
    renders_failed: int = 0
    renders_cancelled: int = 0
    placeholders: int = 0
    assets_fetched: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    callbacks_lost: int = 0
    callbacks_duplicated: int = 0
    callback_attempts: int = 0
    downloads: int = 0
    download_redirects: int = 0
    requests_down: int = 0
    requests_injected: int = 0


@dataclass
class Render:
    """One render: the request as first submitted, its status, its output file and its task."""

    request: RenderRequest
    status: RenderStatus
    video_url: str
    output: Path | None = None
    task: asyncio.Task[None] | None = None


class Gate:
    """A concurrency limit read from the config at each entry, so PATCHing it applies at once."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._active = 0
        self._cond = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the slots while rendering."""
        async with self._cond:
            await self._cond.wait_for(lambda: self._active < self._limit())
            self._active += 1
        try:
            yield
        finally:
            async with self._cond:
                self._active -= 1
                self._cond.notify_all()

    async def poke(self) -> None:
        """Re-check waiters after the limit changed."""
        async with self._cond:
            self._cond.notify_all()


class SimState:
    """All mutable state of one simulator app (created in its lifespan)."""

    def __init__(self, config: VideoSimConfig, work_dir: Path, http: httpx.AsyncClient) -> None:
        self.initial = config.model_copy(deep=True)
        self.work_dir = work_dir
        self.http = http
        self.ffmpeg = render.find_ffmpeg()
        self.gate = Gate(lambda: self.config.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._apply(config)

    def _apply(self, config: VideoSimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.window_origin = time.monotonic()
        self.renders: dict[str, Render] = {}
        self.counters = Counters()
        self.executed_total = 0

    # --- faults ------------------------------------------------------------------------------------
    def update_config(self, patch: dict[str, Any]) -> VideoSimConfig:
        """Apply a partial config (validated as a whole); restarts the down window or the seed if given."""
        self.config = VideoSimConfig.model_validate({**self.config.model_dump(), **patch})
        if "down_window_s" in patch:
            self.window_origin = time.monotonic()
        if "seed" in patch:
            self.rng = random.Random(self.config.seed)
        return self.config

    def is_down(self) -> bool:
        """Whether the service should answer 503 now."""
        window = self.config.down_window_s
        elapsed = time.monotonic() - self.window_origin
        return self.config.down or (window is not None and window[0] <= elapsed < window[1])

    def fault_status(self) -> int | None:
        """The status to answer an API request with instead of serving it, if any (and count it)."""
        if self.is_down():
            self.counters.requests_down += 1
            return 503
        if self.config.inject_next > 0:
            self.config.inject_next -= 1
            self.counters.requests_injected += 1
            return self.config.inject_status
        return None

    # --- renders -----------------------------------------------------------------------------------
    def submit(self, request: RenderRequest, base_url: str) -> tuple[Render, bool]:
        """Accept a render, or return the existing one with that id (``True`` if it is new)."""
        self.counters.submits_total += 1
        existing = self.renders.get(request.render_id)
        if existing is not None:
            self.counters.submits_replayed += 1
            return existing, False
        base = (self.config.public_url or base_url).rstrip("/")
        video_url = f"{base}/renders/{request.render_id}/video"
        item = Render(request, RenderStatus(id=request.render_id, status=RenderState.QUEUED), video_url)
        self.renders[request.render_id] = item
        self.counters.renders_submitted += 1
        item.task = self._spawn(self._run(item))
        return item, True

    def cancel(self, item: Render) -> RenderStatus:
        """Cancel a render that is not finished; a terminal render is left as it is."""
        if not item.status.status.terminal:
            if item.task is not None:
                item.task.cancel()
            self._finish(item, RenderState.CANCELLED, error="cancelled by request")
        return item.status

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set(self, item: Render, **update: Any) -> None:
        item.status = item.status.model_copy(update=update)

    def _finish(self, item: Render, state: RenderState, **update: Any) -> None:
        self._set(item, status=state, **update)
        name = {"completed": "renders_completed", "failed": "renders_failed", "cancelled": "renders_cancelled"}
        setattr(self.counters, name[state.value], getattr(self.counters, name[state.value]) + 1)
        if item.request.callback_url:
            self._spawn(self._deliver(item.request.callback_url, item.status))

    async def _run(self, item: Render) -> None:
        render_id = item.request.render_id
        async with self.gate.slot():
            self._set(item, status=RenderState.RENDERING, progress=0.05)
            self.counters.renders_executed[render_id] = self.counters.renders_executed.get(render_id, 0) + 1
            self.executed_total += 1
            try:
                await self._execute(item, self.executed_total)
            except (FetchFailed, render.RenderFailed) as exc:
                self._finish(item, RenderState.FAILED, error=str(exc))
            except Exception as exc:  # the top of a background task: record it, never leave a render hanging
                log.exception("render %s failed unexpectedly", render_id)
                self._finish(item, RenderState.FAILED, error=f"internal error: {exc}")

    async def _execute(self, item: Render, ordinal: int) -> None:
        config, request = self.config, item.request
        latency = config.latency_s
        delay = self.rng.uniform(*latency) if isinstance(latency, tuple) else latency
        fail_draw = self.rng.random()
        if delay:
            await asyncio.sleep(delay)
        if ordinal <= config.fail_first_renders:
            raise render.RenderFailed(f"simulated failure: render {ordinal} of the first {config.fail_first_renders}")
        if fail_draw < config.failure_rate:
            raise render.RenderFailed("simulated failure (failure_rate)")
        folder = self.work_dir / request.render_id
        folder.mkdir(parents=True, exist_ok=True)
        inputs = await self._fetch_all(item, folder)
        self._set(item, progress=0.7)
        if self.ffmpeg is not None and not config.force_placeholder:
            output = folder / "video.mp4"
            duration = await render.render_mp4(self.ffmpeg, inputs, request.options, output, config.render_timeout_s)
            placeholder = False
        else:
            output = folder / "video.placeholder.txt"
            reason = "forced by the force_placeholder knob" if self.ffmpeg else "no video encoder is available"
            duration = render.write_placeholder(output, request, inputs, reason)
            placeholder = True
            self.counters.placeholders += 1
        item.output = output
        self._finish(
            item,
            RenderState.COMPLETED,
            progress=1.0,
            video_url=item.video_url,
            duration_s=duration,
            placeholder=placeholder,
        )

    async def _fetch_all(self, item: Render, folder: Path) -> list[render.SegmentInput]:
        segments = sorted(item.request.segments, key=lambda s: s.index)
        total, done = 2 * len(segments), 0
        limit = asyncio.Semaphore(4)

        async def fetch(url: str, what: str) -> bytes:
            nonlocal done
            async with limit:
                data = await self._fetch(url, what)
            done += 1
            self._set(item, progress=round(0.05 + 0.6 * done / total, 3))
            return data

        blobs = await asyncio.gather(
            *(fetch(s.audio_url, f"segment {s.index} audio_url") for s in segments),
            *(fetch(s.image_url, f"segment {s.index} image_url") for s in segments),
        )
        inputs = []
        for n, segment in enumerate(segments):
            audio_data, image_data = blobs[n], blobs[len(segments) + n]
            suffix = next((ext for magic, ext in _IMAGE_MAGIC.items() if image_data.startswith(magic)), ".png")
            image, audio = folder / f"image-{segment.index}{suffix}", folder / f"audio-{segment.index}.audio"
            image.write_bytes(image_data)
            audio.write_bytes(audio_data)
            measured = await render.media_duration(self.ffmpeg, audio, audio_data)
            duration = measured if measured is not None else segment.end_s - segment.start_s
            inputs.append(render.SegmentInput(segment.index, image, audio, duration))
        return inputs

    async def _fetch(self, url: str, what: str) -> bytes:
        limit = self.config.max_asset_bytes

        def operation() -> Operation[bytes]:
            response = yield httpx.Request("GET", url, headers=self.config.fetch_headers)
            if response.status_code >= 400:
                raise FetchFailed(f"{what}: GET {url} answered HTTP {response.status_code}")
            if len(response.content) > limit:
                raise FetchFailed(f"{what}: {url} is larger than {limit} bytes")
            return response.content

        try:
            data = await adrive(operation(), self.http, FETCH_RETRY)
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{what}: GET {url} failed: {exc!r}") from None
        self.counters.assets_fetched += 1
        return data

    # --- callbacks ---------------------------------------------------------------------------------
    async def _deliver(self, url: str, status: RenderStatus) -> None:
        config = self.config
        if self.rng.random() < config.callback_lost_rate:
            self.counters.callbacks_lost += 1
            return
        copies = 2 if self.rng.random() < config.callback_duplicate_rate else 1
        self.counters.callbacks_duplicated += copies - 1
        body = status.model_dump(mode="json")
        for _ in range(copies):
            for attempt in range(config.callback_attempts):
                if attempt:
                    await asyncio.sleep(config.callback_backoff_s * 2 ** (attempt - 1))
                self.counters.callback_attempts += 1
                try:
                    response = await self.http.post(url, json=body, timeout=config.fetch_timeout_s)
                except httpx.HTTPError:
                    continue
                if response.is_success:
                    self.counters.callbacks_sent += 1
                    break
            else:
                self.counters.callbacks_failed += 1

    # --- lifecycle ---------------------------------------------------------------------------------
    def counters_dict(self) -> dict[str, Any]:
        """The counters as JSON."""
        return asdict(self.counters)

    async def reset(self) -> None:
        """Forget every render and counter, and go back to the config the app started with."""
        await self.close()
        self._apply(self.initial.model_copy(deep=True))
        await self.gate.poke()

    async def close(self) -> None:
        """Cancel every render and callback, and delete the files."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for render_id in self.renders:  # only what this simulator wrote: work_dir may be the user's own
            shutil.rmtree(self.work_dir / render_id, ignore_errors=True)
