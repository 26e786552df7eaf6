"""Clients of the external providers: RunPod (TTS), Runware (images) and the video service.

Each client is written once as sans-I/O operations (see :mod:`strangler_bridge.http`) and offered as a
sync class (for RQ workers) and an async class (for concurrency inside a worker or the API).
"""
