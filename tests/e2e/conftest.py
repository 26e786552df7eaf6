"""The end-to-end stack factory shared by the phase tests: fast simulators, short reconcile deadlines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings
from tests.support.stack import StackFactory

#: Simulator knobs that keep a test fast (overridden per call).
FAST_KNOBS: dict[str, dict[str, Any]] = {
    "runpod": {"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05, "webhook_timeout_s": 5.0, "seed": 7},
    "runware": {"latency_s": 0.05, "image_max_side": 64, "seed": 3},
    "video": {},
}


@pytest.fixture
def stack_defaults() -> dict[str, Any]:
    """Settings a test module wants on every stack it starts (override in the module)."""
    return {}


@pytest.fixture
def make_stack(settings: Settings, tmp_path: Path, stack_defaults: dict[str, Any]) -> Iterator[StackFactory]:
    """Start a DevStack: ``make_stack(workers=, runpod={knobs}, runware=, video=, runpod_url=, process_env=,
    **settings)``; all stop after."""
    stacks: list[DevStack] = []

    def make(
        *,
        workers: int = 1,
        runpod: dict[str, Any] | None = None,
        runware: dict[str, Any] | None = None,
        video: dict[str, Any] | None = None,
        runpod_url: str | None = None,
        process_env: Callable[[str], dict[str, str]] | None = None,
        **overrides: Any,
    ) -> DevStack:
        update = {"reconcile_after_s": 1.5, "reconcile_interval_s": 0.2, **stack_defaults, **overrides}
        stack = DevStack(
            settings.model_copy(update=update),
            workers=workers,
            runpod={**FAST_KNOBS["runpod"], **(runpod or {})},
            runware={**FAST_KNOBS["runware"], **(runware or {})},
            video={**FAST_KNOBS["video"], **(video or {})},
            log_dir=tmp_path / f"stack{len(stacks)}",
            runpod_url=runpod_url,
            process_env=process_env,
        )
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()
