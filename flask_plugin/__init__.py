"""The legacy side: a Flask extension, blueprint and client that hand GPU steps to the service.

::

    bridge = StranglerBridge()          # bridge.init_app(app) in the app factory

    @bridge.step("tts")                 # routed by the tts flag, per video
    def synthesize(chunks, voice, out_dir, video_id): ...

    @bridge.step("imagegen", adapter=ImageAdapter(width=1024, height=576))
    def generate(prompts, out_dir, video_id): ...

    @bridge.step("video")
    def render(segments, out_dir, video_id): ...

    @bridge.step("jobs")                # the whole pipeline on POST /jobs
    def produce(chunks, voice, style, out_dir, video_id): ...

    @bridge.on_callback                 # each completion webhook POSTed to /strangler/callbacks
    def finished(webhook_id, event): ...
"""

from flask_plugin.adapters import ParameterAdapter, StepAdapter, StepCall, TtsAdapter
from flask_plugin.callbacks import CallbackHandler
from flask_plugin.events import BridgeEvent, EventLog
from flask_plugin.extension import StranglerBridge, load_settings
from flask_plugin.flag_cache import FlagCache, FlagSnapshot
from flask_plugin.imagegen import ImageAdapter
from flask_plugin.jobs import JobAdapter
from flask_plugin.state import EXTENSION_KEY, BridgeState
from flask_plugin.video import VideoAdapter
from strangler_bridge.client.bridge import (
    IMAGES,
    JOBS,
    TTS,
    VIDEO,
    BatchFailed,
    BatchRoute,
    BridgeClient,
    Deadline,
    idempotency_key,
)
from strangler_bridge.contracts.callbacks import CallbackEvent
from strangler_bridge.contracts.events import EventKind
from strangler_bridge.contracts.jobs import ImageOptions, VideoOptions

__all__ = [
    "EXTENSION_KEY",
    "IMAGES",
    "JOBS",
    "TTS",
    "VIDEO",
    "BatchFailed",
    "BatchRoute",
    "BridgeClient",
    "BridgeEvent",
    "BridgeState",
    "CallbackEvent",
    "CallbackHandler",
    "Deadline",
    "EventKind",
    "EventLog",
    "FlagCache",
    "FlagSnapshot",
    "ImageAdapter",
    "ImageOptions",
    "JobAdapter",
    "ParameterAdapter",
    "StepAdapter",
    "StepCall",
    "StranglerBridge",
    "TtsAdapter",
    "VideoAdapter",
    "VideoOptions",
    "idempotency_key",
    "load_settings",
]
