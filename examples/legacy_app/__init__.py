"""A small Flask app shaped like the legacy video app, wired to strangler-bridge the way the docs say.

``create_app(config)`` builds it; ``POST /api/video/create`` runs transcript -> script -> TTS -> segments.json
-> images -> video -> publish. Only TTS goes through the bridge (phase 1); the rest is the legacy code.
"""

from .app import create_app

__all__ = ["create_app"]
