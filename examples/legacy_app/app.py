"""The app factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .extensions import bridge
from .pipeline import api

#: Legacy settings and their defaults; each may also come from an environment variable of the same name.
DEFAULTS: dict[str, Any] = {
    "OUTPUT_DIR": "output",  # where each video's work files and the published videos go
    "PUBLIC_URL": "http://127.0.0.1:5000",  # how the video service reaches this app's /media files
    "RUNPOD_ENDPOINT_URL": "",  # https://api.runpod.ai/v2/<endpoint-id>
    "RUNPOD_API_KEY": "",
    "RUNWARE_URL": "https://api.runware.ai/v1",
    "RUNWARE_API_KEY": "",
    "RUNWARE_MODEL": "runware:100@1",
    "VIDEO_SERVICE_URL": "",  # the Express render service
    "VIDEO_SERVICE_TOKEN": "",
    "HTTP_TIMEOUT_S": 60.0,
    "STEP_TIMEOUT_S": 600.0,
    "POLL_INTERVAL_S": 1.0,
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then ``config`` (which wins)."""
    app = Flask(__name__)
    app.config.from_mapping({key: _from_env(key, default) for key, default in DEFAULTS.items()})
    app.config.from_mapping(config or {})
    bridge.init_app(app)  # reads STRANGLER_SERVICE_URL, STRANGLER_SERVICE_TOKEN, ... from app.config or the env
    app.register_blueprint(api)
    return app


def _from_env(key: str, default: Any) -> Any:
    value = os.environ.get(key)
    return default if value is None else type(default)(value)
