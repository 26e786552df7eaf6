"""``strangler-bridge simulate <provider>``: run a provider simulator on loopback."""

from __future__ import annotations

import click

from strangler_bridge.cli.lazy import LazyGroup

SIMULATORS = {
    "runpod": "strangler_bridge.simulators.runpod.cli:command",
    "runware": "strangler_bridge.simulators.runware.cli:command",
    "video": "strangler_bridge.simulators.video.cli:command",
}


@click.group(cls=LazyGroup, lazy=SIMULATORS)
def simulate() -> None:
    """Run a faithful local stand-in for RunPod, Runware or the video service."""
