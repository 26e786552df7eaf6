"""Benchmark 7, the cost of a fallback: what a video of the example legacy app costs when the service fails.

The example legacy app (``examples/legacy_app``) runs over real HTTP with ``tts`` on the service and fallback on;
its own legacy code talks to its own simulators. Each scenario gets a fresh app (a closed breaker); the service
fails three ways:

- **API stopped**: the API process is stopped (connections refused);
- **API hung**: the API process is paused with SIGSTOP (connections accepted, never answered), resumed after;
- **provider stuck**: the service's RunPod endpoint accepts jobs and never runs them (``queue_delay_s``), so the
  service waits for ever; the app gives up after ``STRANGLER_SERVICE_STALL_S`` without progress.

For each, the first failing video (the breaker still closed) and the next ones (the breaker open) are timed, each
paired with a video of the legacy path alone made right after it (the same app with every phase legacy); the
figures are the milliseconds a video adds over its pair. Settings are the defaults except the stall time.

    python scripts/bench/fallback.py [--quick] [--runs 2] [--videos 5] [--stall-s 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from statistics import median
from typing import Any

import httpx

from scripts.bench.common import Figure, dev_stack, figure, log, parser, report, runs_of, wait_until, workdir
from strangler_bridge.cli.devstack import SIM_KEY, DevStack
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer

PART = "7 fallback cost"
SOURCE = "Dawn came. Boats left. Night fell."
FAST_RUNPOD = {"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05}
PHASES = ("tts", "imagegen", "video", "jobs")


class BenchApp:
    """The example app on loopback with ``tts`` on the service (static flags, so a dead service keeps it)."""

    def __init__(self, stack: DevStack, legacy_runpod: str, out: Path, **config: Any) -> None:
        from examples.legacy_app.serving import ServedApp, stack_config

        overrides = {"STRANGLER_FLAGS": {"tts": {"mode": "fastapi"}}, **config}
        settings = stack_config(stack, out, runpod_url=legacy_runpod, **overrides)
        settings.pop("STRANGLER_FLAGS_CACHE_S")  # a deployment's default, as measured before
        self.served = ServedApp(settings)
        self.count = 0

    def video(self) -> float:
        """Make one video; its wall time in seconds."""
        self.count += 1
        started = time.monotonic()
        self.served.create(f"bench-{os.getpid()}-{id(self)}-{self.count}", SOURCE, timeout_s=900)
        return time.monotonic() - started

    def waited_ms(self, last: int) -> list[float]:
        """What each of the ``last`` fallbacks cost inside the step before the legacy code ran (oldest first)."""
        return [1000 * float(e["data"]["waited_s"]) for e in reversed(self.served.fallbacks(200)[:last])]

    def breaker(self) -> str:
        """The tts breaker's state."""
        return self.served.breaker()

    def close(self) -> None:
        """Stop serving and close the bridge."""
        self.served.close()


def set_flags(stack: DevStack, **modes: str) -> None:
    """Every phase to ``legacy`` unless named."""
    with stack.client() as client:
        for phase in PHASES:
            client.put(f"/flags/{phase}", json={"mode": modes.get(phase, "legacy")}).raise_for_status()


@contextlib.contextmanager
def api_stopped(stack: DevStack) -> Iterator[None]:
    """The API process stopped, started again after."""
    assert stack.api is not None
    stack.api.stop()
    try:
        yield
    finally:
        stack.start_api()


@contextlib.contextmanager
def api_hung(stack: DevStack) -> Iterator[None]:
    """The API process paused (SIGSTOP), always resumed after."""
    assert stack.api is not None
    group = stack.api.proc.pid
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


@contextlib.contextmanager
def provider_stuck(stack: DevStack) -> Iterator[None]:
    """The service's RunPod endpoint keeps every job queued."""
    stack.set_knobs("runpod", queue_delay_s=3600.0)
    try:
        yield
    finally:
        stack.set_knobs("runpod", queue_delay_s=0.0)


def ready(stack: DevStack) -> bool:
    """Whether the API answers ``/readyz`` with 200."""
    with stack.client(timeout_s=2) as client:
        try:
            return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False


def scenario(
    make_app: Callable[..., BenchApp],
    baseline: BenchApp,
    failure: Callable[[], contextlib.AbstractContextManager[None]],
    videos: int,
) -> dict[str, Any]:
    """Each failing video paired with a legacy-only one made right after it (so load changes hit both alike).

    Returns the first pair, the next pairs, and how many failing videos it took to open the breaker.
    """
    app = make_app()
    try:
        with failure():
            first = (app.video(), baseline.video())
            opened_after = 1 if app.breaker() == "open" else 0
            rest = []
            for _ in range(videos):
                rest.append((app.video(), baseline.video()))
                if not opened_after and app.breaker() == "open":
                    opened_after = 1 + len(rest)
        waited = app.waited_ms(videos)
    finally:
        app.close()
    return {"first": first, "next": rest, "opened_after": opened_after or videos + 1, "waited_ms": waited}


def build_figures(measured: dict[str, list[float]], stall_s: float) -> list[Figure]:
    """The reported figures, each with its target."""
    figures = []
    for name, values in measured.items():
        if name.endswith("before the legacy code"):
            note_text = "median over the videos; the fallback's own cost, free of the legacy path's noise"
            figures.append(figure(PART, name, "ms", values, "<= 100", note=note_text))
        elif name.endswith("until the breaker is open"):
            figures.append(figure(PART, name, "videos", values, "<= 1"))
        elif "breaker open, added" in name:
            figures.append(figure(PART, name, "ms", values, "<= 100", baseline="the legacy path alone, same run"))
        elif name == "provider stuck: first video, added":
            target = f"<= {1000 * (stall_s + 5):.0f}"
            note_text = f"STRANGLER_SERVICE_STALL_S={stall_s:g}: detected within the stall time plus a few seconds"
            figures.append(figure(PART, name, "ms", values, target, note=note_text))
        else:
            figures.append(figure(PART, name, "ms", values, note="defaults: 3 failures open the breaker"))
    return figures


def main() -> None:
    """Measure and report."""
    args = parser(__doc__ or "")
    args.add_argument("--videos", type=int, default=None, help="videos per scenario once failing (default 5; quick 2)")
    args.add_argument("--stall-s", type=float, default=5.0, help="STRANGLER_SERVICE_STALL_S of the app")
    options = args.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request of the legacy app
    logging.getLogger("flask_plugin").setLevel(logging.ERROR)  # the fallbacks are expected here
    runs, videos = runs_of(options, full=2), options.videos or (2 if options.quick else 5)
    stall_s = options.stall_s
    from strangler_bridge.simulators.runpod.app import create_app as runpod_app
    from strangler_bridge.simulators.runpod.config import RunPodSimConfig

    figures_raw: dict[str, list[float]] = {}
    raw: list[dict[str, Any]] = []

    def note(name: str, value: float) -> None:
        figures_raw.setdefault(name, []).append(value)

    sim = RunPodSimConfig.model_validate({"api_key": SIM_KEY, **FAST_RUNPOD})
    legacy_runpod = ThreadedServer(runpod_app(sim)).start()
    try:
        with (
            workdir() as wd,
            dev_stack(wd, workers=1, runpod=FAST_RUNPOD, runware={"latency_s": 0.05}, video={}) as stack,
        ):
            counter = iter(range(10_000))

            def make_app(**config: Any) -> BenchApp:
                out = wd / f"legacy-{next(counter)}"
                config.setdefault("STRANGLER_SERVICE_STALL_S", stall_s)
                return BenchApp(stack, f"{legacy_runpod.url}/v2/sim", out, **config)

            # The legacy path alone: the same app with the bridge, every phase legacy (its service is a closed port).
            baseline = make_app(STRANGLER_SERVICE_URL=f"http://127.0.0.1:{free_port()}", STRANGLER_FLAGS={})
            try:
                set_flags(stack, tts="fastapi")
                baseline.video()  # warm-up
                for r in range(runs):
                    run: dict[str, Any] = {}
                    for name, failure in (
                        ("API stopped", lambda: api_stopped(stack)),
                        ("API hung", lambda: api_hung(stack)),
                        ("provider stuck", lambda: provider_stuck(stack)),
                    ):
                        wait_until(lambda: ready(stack), 60, "the API to be ready")
                        run[name] = measured = scenario(make_app, baseline, failure, videos)
                        first = measured["first"][0] - measured["first"][1]
                        added = median(a - b for a, b in measured["next"])
                        note(f"{name}: first video, added", 1000 * first)
                        note(f"{name}: breaker open, added per video (median)", 1000 * added)
                        note(f"{name}: failing videos until the breaker is open", measured["opened_after"])
                        note(
                            f"{name}: breaker open, spent in the step before the legacy code",
                            median(measured["waited_ms"]),
                        )
                        log(
                            f"fallback run {r + 1} {name}: first video +{first:.2f} s, then +{1000 * added:.0f} ms "
                            f"per video; breaker open after {measured['opened_after']} video(s)"
                        )
                    raw.append(run)
            finally:
                baseline.close()
    finally:
        legacy_runpod.stop()
    figures = build_figures(figures_raw, stall_s)
    report(PART, figures, options, {"runs": raw})


if __name__ == "__main__":
    main()
