"""A small Flask app shaped like the legacy video app, wired to strangler-bridge the way the docs say.

``create_app(config)`` builds it; ``POST /api/video/create`` runs transcript -> script -> TTS -> segments.json
-> images -> video -> publish. TTS, images and the render each go through the bridge (``tts``, ``imagegen``,
``video`` flags), and so do steps 3-6 together (``jobs``: the whole pipeline as one service job).
"""

from .app import create_app

__all__ = ["create_app"]
