"""The retention sweep, on a local directory and on S3 (moto's server), against real Redis records."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fastapi_app import retention
from fastapi_app.runtime import Runtime
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration

KEYS = {
    "live": "tts/tts_live/0-a.wav",
    "gone": "tts/tts_gone/0-a.wav",
    "gone_job": "jobs/job_gone/segments.json",
    "live_job": "jobs/job_live/segments.json",
    "gone_video": "vid/vid_gone/video-a.mp4",
    "unknown": "misc/file.bin",
    "gone_upload": "uploads/tts/tts_gone/job-0.wav",
    "live_upload": "uploads/tts/tts_live/job-0.wav",
    "reused": "img/img_gone/0-a.png",
}


@pytest.fixture(params=["local", "s3"])
def rt(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Runtime]:
    chosen = request.getfixturevalue("s3_settings") if request.param == "s3" else settings
    runtime = Runtime.build(chosen)
    yield runtime
    for key in runtime.redis.scan_iter(f"{chosen.redis_prefix}*"):
        runtime.redis.delete(key)
    runtime.close()


def stored(rt: Runtime) -> set[str]:
    return {key for key, _ in rt.artifacts.entries()}


def test_only_old_artifacts_of_expired_records_are_removed(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in KEYS.values():
        rt.artifacts.put(key, b"data")
    rt.redis.set(rt.batches.key("tts_live"), "{}")
    rt.redis.set(rt.jobs.key("job_live"), "{}")
    rt.redis.set(rt.keys.reuse_artifact(KEYS["reused"]), "f" * 64)  # a reuse entry points at it: kept

    young = retention.sweep(rt, now=time.time())  # nothing is older than the record TTL yet
    assert (young.seen, young.removed) == (9, 0)

    # A reuse index (say) claims the expired video: it stays.
    monkeypatch.setattr(retention, "REFERENCE_CHECKS", [*retention.REFERENCE_CHECKS, lambda _, k: k.startswith("vid/")])
    later = time.time() + rt.settings.record_ttl_s + 60
    result = retention.sweep(rt, now=later)
    assert (result.seen, result.removed) == (9, 3)
    kept = {"live", "live_job", "gone_video", "unknown", "live_upload", "reused"}
    assert stored(rt) == {KEYS[name] for name in kept}
