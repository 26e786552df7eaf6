"""Merging the effects of transitions applied one after the other."""

from __future__ import annotations

from fastapi_app.batch_ops import merge_effects
from fastapi_app.docstore import Effects


def test_a_later_effect_wins_for_the_same_member() -> None:
    merged = merge_effects(
        [
            Effects(due={"tts:b:0": 10.0, "tts:b:1": 10.0}),
            Effects(undue={"tts:b:0"}, changed=False),
            Effects(due={"tts:b:1": 20.0, "tts:b:2": 5.0}, undue={"tts:b:2"}),
        ]
    )
    assert merged.due == {"tts:b:1": 20.0}
    assert merged.undue == {"tts:b:0", "tts:b:2"}
    assert merged.changed


def test_nothing_changed_when_no_effect_changed() -> None:
    assert not merge_effects([Effects(changed=False), Effects(changed=False)]).changed
    assert merge_effects([]).due == {}
