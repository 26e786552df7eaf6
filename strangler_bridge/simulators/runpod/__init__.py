"""A local stand-in for a RunPod serverless endpoint: RunPod's routes, auth, job states, policies, retention and
webhooks, a built-in TTS handler producing real WAV audio (or your own runpod.serverless handler), fault knobs
and counters.

Run it with ``strangler-bridge simulate runpod`` or build the app with :func:`create_app`.
"""

from strangler_bridge.simulators.runpod.app import create_app
from strangler_bridge.simulators.runpod.config import RunPodSimConfig, WebhookFaults
from strangler_bridge.simulators.runpod.engine import RunPodEngine
from strangler_bridge.simulators.runpod.handlers import speech_duration

__all__ = ["RunPodEngine", "RunPodSimConfig", "WebhookFaults", "create_app", "speech_duration"]
