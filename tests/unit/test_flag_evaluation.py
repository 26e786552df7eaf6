"""Which side answers for a phase and a video."""

from __future__ import annotations

import pytest

from strangler_bridge.contracts.flags import FlagMode, PhaseFlag
from strangler_bridge.flags import effective_mode, rollout_bucket

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mode", [FlagMode.SHADOW, FlagMode.FASTAPI])
def test_full_rollout_applies_mode_to_every_video(mode: FlagMode) -> None:
    flag = PhaseFlag(mode=mode, percent=100)
    assert {effective_mode(flag, f"v{i}") for i in range(50)} == {mode}
    assert effective_mode(flag, None) is mode


def test_legacy_ignores_allow_list() -> None:
    assert effective_mode(PhaseFlag(mode=FlagMode.LEGACY, allow=["v1"]), "v1") is FlagMode.LEGACY


def test_allow_list_wins_over_zero_percent() -> None:
    flag = PhaseFlag(mode=FlagMode.FASTAPI, percent=0, allow=["vip"])
    assert effective_mode(flag, "vip") is FlagMode.FASTAPI
    assert effective_mode(flag, "other") is FlagMode.LEGACY


def test_percentage_is_sticky_and_spread() -> None:
    flag = PhaseFlag(mode=FlagMode.FASTAPI, percent=10)
    first = [effective_mode(flag, f"video-{i}") for i in range(5000)]
    again = [effective_mode(flag, f"video-{i}") for i in range(5000)]
    assert first == again
    share = first.count(FlagMode.FASTAPI) / len(first)
    assert 0.08 < share < 0.12


def test_rollouts_nest_as_percentage_grows() -> None:
    small = {
        f"v{i}"
        for i in range(2000)
        if effective_mode(PhaseFlag(mode=FlagMode.FASTAPI, percent=10), f"v{i}") is FlagMode.FASTAPI
    }
    large = {
        f"v{i}"
        for i in range(2000)
        if effective_mode(PhaseFlag(mode=FlagMode.FASTAPI, percent=50), f"v{i}") is FlagMode.FASTAPI
    }
    assert small < large


def test_partial_rollout_without_video_id_stays_legacy() -> None:
    assert effective_mode(PhaseFlag(mode=FlagMode.FASTAPI, percent=50), None) is FlagMode.LEGACY


def test_bucket_never_changes_between_releases() -> None:
    # A changed hash would move videos between sides mid-rollout; these values are pinned on purpose.
    assert rollout_bucket("video-123") == 31
    assert rollout_bucket("vid-42") == 24
