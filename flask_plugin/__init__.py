"""The legacy side: a Flask extension, blueprint and client that hand GPU steps to the service.

::

    bridge = StranglerBridge()          # bridge.init_app(app) in the app factory

    @bridge.step("tts")                 # routed by the tts flag, per video
    def synthesize(chunks, voice, out_dir, video_id): ...
"""

from flask_plugin.adapters import StepAdapter, StepCall, TtsAdapter
from flask_plugin.client import TTS, BatchFailed, BatchRoute, BridgeClient, Deadline, idempotency_key
from flask_plugin.events import BridgeEvent, EventKind, EventLog
from flask_plugin.extension import StranglerBridge, load_settings
from flask_plugin.flag_cache import FlagCache, FlagSnapshot
from flask_plugin.state import EXTENSION_KEY, BridgeState

__all__ = [
    "EXTENSION_KEY",
    "TTS",
    "BatchFailed",
    "BatchRoute",
    "BridgeClient",
    "BridgeEvent",
    "BridgeState",
    "Deadline",
    "EventKind",
    "EventLog",
    "FlagCache",
    "FlagSnapshot",
    "StepAdapter",
    "StepCall",
    "StranglerBridge",
    "TtsAdapter",
    "idempotency_key",
    "load_settings",
]
