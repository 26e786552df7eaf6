"""The Flask extension: ``StranglerBridge(app)`` or ``bridge.init_app(app)``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from flask_plugin.blueprint import create_blueprint
from strangler_bridge.settings import Settings

EXTENSION_KEY = "strangler_bridge"


@dataclass
class BridgeState:
    """What the extension keeps per app, in ``app.extensions["strangler_bridge"]``."""

    settings: Settings


class StranglerBridge:
    """Routes the legacy app's GPU steps to the strangler-bridge service, per phase flag."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read ``STRANGLER_*`` config (falling back to the environment) and register the blueprint."""
        settings = Settings.from_mapping(app.config)
        app.extensions[EXTENSION_KEY] = BridgeState(settings=settings)
        app.register_blueprint(create_blueprint())
