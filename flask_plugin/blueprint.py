"""The ``/strangler`` blueprint."""

from __future__ import annotations

from flask import Blueprint


def create_blueprint() -> Blueprint:
    """A new blueprint (one per app, so nothing is shared between apps)."""
    return Blueprint("strangler_bridge", __name__, url_prefix="/strangler")
