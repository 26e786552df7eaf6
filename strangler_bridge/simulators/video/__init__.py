"""A local stand-in for the video render service: the default contract, real MP4s via ffmpeg, fault knobs.

Run it with ``strangler-bridge simulate video`` or build the app with :func:`create_app`.
"""

from strangler_bridge.simulators.video.app import create_app
from strangler_bridge.simulators.video.config import VideoSimConfig
from strangler_bridge.simulators.video.render import PLACEHOLDER_HEADER, read_placeholder

__all__ = ["PLACEHOLDER_HEADER", "VideoSimConfig", "create_app", "read_placeholder"]
