"""A local stand-in for Runware's image API: ``POST /v1`` with Runware's tasks, errors and delivery modes,
real images, webhooks, fault knobs and counters. Start it with ``strangler-bridge simulate runware``.
"""

from strangler_bridge.simulators.runware.app import create_app
from strangler_bridge.simulators.runware.config import RunwareSimConfig

__all__ = ["RunwareSimConfig", "create_app"]
