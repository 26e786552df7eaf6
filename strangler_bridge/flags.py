"""Flag evaluation: which side answers for a phase and a video. Pure functions, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag


def rollout_bucket(video_id: str) -> int:
    """A stable bucket in ``[0, 100)`` for a video id.

    Keyed by the video id alone (not the phase), so rollouts nest: the first 10% of videos moved for
    ``imagegen`` are among those already moved for ``tts`` at 10% or more.
    """
    digest = hashlib.sha256(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def effective_mode(flag: PhaseFlag, video_id: str | None) -> FlagMode:
    """The mode that applies to one video: ``flag.mode`` if the video is allowed or in the rollout, else legacy."""
    if flag.mode is FlagMode.LEGACY:
        return FlagMode.LEGACY
    if video_id is not None and video_id in flag.allow:
        return flag.mode
    if flag.percent >= 100:
        return flag.mode
    if video_id is None or flag.percent <= 0:
        return FlagMode.LEGACY
    return flag.mode if rollout_bucket(video_id) < flag.percent else FlagMode.LEGACY


def default_flags(static: Mapping[Phase, PhaseFlag] | None = None) -> dict[Phase, PhaseFlag]:
    """Every phase's flag: the given static values, ``legacy`` for the rest."""
    static = static or {}
    return {phase: static.get(phase, PhaseFlag()) for phase in Phase}
