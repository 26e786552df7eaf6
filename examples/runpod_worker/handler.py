"""A RunPod serverless TTS handler that speaks strangler-bridge's chunk contract.

Input:  {"chunks": [{"index": 0, "text": "Hello.", "voice": "narrator"}], "format": "wav"}
Output: {"chunks": [{"index": 0, "audio_base64": "<WAV bytes, base64>", "duration_s": 0.72}]}

Replace ``synthesize`` with your model; it makes a quiet tone as long as the text would take to read.
Run it locally with the runpod SDK's test API (``python handler.py --rp_serve_api``) or with strangler-bridge's
simulator (``strangler-bridge simulate runpod --handler handler.py``), and deploy it to RunPod unchanged.
"""

import base64
import io
import math
import struct
import wave

import runpod

SAMPLE_RATE = 16000


def synthesize(text: str, voice: str) -> bytes:
    """WAV audio for ``text`` read by ``voice`` (here: a tone, 60 ms per character)."""
    seconds = max(0.3, 0.06 * len(text.strip()))
    pitch = 160 + sum(voice.encode()) % 160
    frames = b"".join(
        struct.pack("<h", int(3000 * math.sin(2 * math.pi * pitch * i / SAMPLE_RATE)))
        for i in range(int(seconds * SAMPLE_RATE))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(frames)
    return buffer.getvalue()


def handler(job):
    """One RunPod job: every chunk of the input, synthesised."""
    request = job["input"]
    if request.get("format", "wav") != "wav":
        return {"error": f"unsupported format {request.get('format')!r}: this handler makes wav"}
    chunks = []
    for chunk in request["chunks"]:
        audio = synthesize(chunk["text"], chunk.get("voice") or "default")
        with wave.open(io.BytesIO(audio)) as wav:
            duration = wav.getnframes() / wav.getframerate()
        chunks.append(
            {"index": chunk["index"], "audio_base64": base64.b64encode(audio).decode(), "duration_s": duration}
        )
    return {"chunks": chunks}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
