"""Reuse (issue 20) as plain functions: fingerprints, the transitions of reused and waiting items, RunPod cost."""

from __future__ import annotations

from typing import Any

import pytest

from fastapi_app.reuse.fingerprint import assign_keys, audio_keys, image_keys
from fastapi_app.store.batch import Batch, FailureCode, GroupStatus, new_batch
from fastapi_app.store.batch_transitions import (
    ItemResult,
    Reused,
    claim_group,
    complete_group,
    fail_waiting,
    mark_waiting,
    stop_waiting,
    take_reused,
)
from fastapi_app.tts.runpod_work import job_cost
from strangler_bridge.contracts.common import BatchStatus, ItemStatus
from strangler_bridge.contracts.images import ImageBatchCreate
from strangler_bridge.contracts.tts import TtsBatchCreate
from strangler_bridge.providers.runpod.client import RunPodJob
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.unit

SETTINGS = Settings.load(runpod_endpoint_url="https://api.runpod.ai/v2/abc")


def _tts(**changes: Any) -> TtsBatchCreate:
    return TtsBatchCreate.model_validate({"chunks": [{"text": "Hello there."}], "voice": "v1", **changes})


def _image(image: dict[str, Any] | None = None, **changes: Any) -> ImageBatchCreate:
    body = {"images": [{"prompt": "a lighthouse", "seed": 7, **(image or {})}], "width": 256, "height": 256}
    return ImageBatchCreate.model_validate({**body, **changes})


def test_identical_input_has_one_fingerprint_and_any_difference_another() -> None:
    key = audio_keys(SETTINGS, _tts())[0]
    assert audio_keys(SETTINGS, _tts(metadata={"x": 1}, video_id="v"))[0] == key  # not part of the output
    for other in (_tts(voice="v2"), _tts(format="mp3"), _tts(chunks=[{"text": "Hello there!"}])):
        assert audio_keys(SETTINGS, other)[0] != key
    elsewhere = SETTINGS.model_copy(update={"runpod_endpoint_url": "https://api.runpod.ai/v2/other"})
    assert audio_keys(elsewhere, _tts())[0] != key


def test_an_image_fingerprint_covers_prompt_style_model_size_format_and_seed() -> None:
    key = image_keys(SETTINGS, _image())[0]
    assert image_keys(SETTINGS, _image(metadata={"a": 1}))[0] == key
    others = [
        _image({"seed": 8}),
        _image({"negative_prompt": "fog"}),
        _image(style="oil"),
        _image(model="runware:101@1"),
        _image(width=320),
        _image(height=320),
        _image(format="JPG"),
    ]
    assert len({image_keys(SETTINGS, other)[0] for other in others} | {key}) == len(others) + 1


def test_unseeded_images_have_a_fingerprint_only_when_opted_in() -> None:
    assert image_keys(SETTINGS, _image({"seed": None})) == {}
    assert list(image_keys(SETTINGS, _image({"seed": None}, reuse="prompt"))) == [0]
    assert image_keys(SETTINGS, _image(reuse=False)) == {}


def test_opting_out_per_request_or_per_deployment_gives_no_fingerprints() -> None:
    assert audio_keys(SETTINGS, _tts(reuse=False)) == {}
    batch = new_batch("tts_1", "tts", [0], 1, {}, video_id=None)
    assert assign_keys(SETTINGS.model_copy(update={"reuse": False}), batch, _tts()).items[0].reuse_key is None
    assert assign_keys(SETTINGS, batch, _tts()).items[0].reuse_key is not None


def _batch(n: int = 4, size: int = 2) -> Batch:
    return new_batch("tts_0123456789abcdef", "tts", list(range(n)), size, {}, video_id=None)


def _reused(index: int, saved: float | None = 0.5) -> Reused:
    return Reused(index=index, artifact=f"tts/x/{index}.wav", content_type="audio/wav", size_bytes=4, cost_saved=saved)


def test_reused_items_complete_their_group_and_batch_without_a_submission() -> None:
    batch = _batch()
    effects, taken = take_reused(batch, [_reused(0), _reused(1), _reused(2)])
    assert taken == [0, 1, 2]
    assert batch.group(0).status is GroupStatus.COMPLETED and batch.group(0).attempt == 0
    assert batch.group(1).status is GroupStatus.PENDING
    assert effects.undue == {batch.due(0)}
    assert batch.status is BatchStatus.RUNNING
    take_reused(batch, [_reused(3, saved=None)])
    assert batch.status is BatchStatus.COMPLETED
    assert (batch.reused, batch.cost_saved, batch.total_cost) == (4, 1.5, None)


def test_a_reused_copy_never_replaces_a_result() -> None:
    batch = _batch()
    claim_group(batch, 0, now=0.0, lease_s=30, max_attempts=3)
    result = ItemResult(index=0, artifact="tts/x/0-a.wav", content_type="audio/wav", size_bytes=4, cost=0.2)
    complete_group(batch, 0, [result, result.model_copy(update={"index": 1})], max_attempts=3, now=1.0)
    assert take_reused(batch, [_reused(0)])[1] == []
    assert batch.item(0).artifact == "tts/x/0-a.wav" and not batch.item(0).reused


def test_waiting_items_are_not_sent_and_do_not_count_as_missing_output() -> None:
    batch = _batch()
    mark_waiting(batch, waiting={1, 2, 3}, owned={0})
    assert batch.status is BatchStatus.RUNNING
    effects, claim = claim_group(batch, 1, now=0.0, lease_s=30, max_attempts=3)
    assert claim is None and effects.due == {batch.due(1): 30.0}
    assert batch.group(1).attempt == 0
    _, claim = claim_group(batch, 0, now=0.0, lease_s=30, max_attempts=3)
    assert claim is not None and claim.indexes == [0]
    result = ItemResult(index=0, artifact="tts/x/0-a.wav", content_type="audio/wav", size_bytes=4)
    complete_group(batch, 0, [result], max_attempts=1, now=1.0)
    assert batch.group(0).status is GroupStatus.PENDING  # item 1 waits: nothing is missing, no attempt is lost
    assert batch.item(1).status is ItemStatus.PENDING and batch.item(1).error is None
    take_reused(batch, [_reused(1), _reused(2), _reused(3)])
    assert batch.status is BatchStatus.COMPLETED


def test_waiters_go_out_themselves_or_share_the_failure() -> None:
    batch = _batch()
    mark_waiting(batch, waiting={0, 1, 2}, owned=set())
    effects, again = stop_waiting(batch, [0, 1], now=5.0)
    assert again and effects.due == {batch.due(0): 5.0}
    assert not batch.item(0).waiting and batch.item(2).waiting
    fail_waiting(batch, [2], "an identical item in flight failed", FailureCode.REJECTED)
    assert batch.group(1).status is GroupStatus.FAILED
    assert batch.item(2).error_code is FailureCode.REJECTED


def test_a_runpod_jobs_cost_is_its_execution_time_at_the_price_shared_by_its_chunks() -> None:
    job = RunPodJob.parse({"id": "j1", "status": "COMPLETED", "executionTime": 2500, "output": {}})
    priced = SETTINGS.model_copy(update={"runpod_usd_per_s": 0.0004})
    assert job_cost(priced, job, 4) == pytest.approx(0.00025)
    assert job_cost(SETTINGS, job, 4) is None  # no price configured: no cost is made up
    untimed = RunPodJob.parse({"id": "j1", "status": "COMPLETED", "output": {}})
    assert job_cost(priced, untimed, 4) is None
