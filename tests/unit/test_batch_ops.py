"""Merging the effects of transitions applied one after the other."""

from __future__ import annotations

from fastapi_app.batching.updates import merge_effects
from fastapi_app.store.docstore import Effects
from strangler_bridge.keys import DueKind, DueMember


def _g(no: int) -> DueMember:
    return DueMember(DueKind.TTS, "b", no)


def test_a_later_effect_wins_for_the_same_member() -> None:
    merged = merge_effects(
        [
            Effects(due={_g(0): 10.0, _g(1): 10.0}),
            Effects(undue={_g(0)}, changed=False),
            Effects(due={_g(1): 20.0, _g(2): 5.0}, undue={_g(2)}),
        ]
    )
    assert merged.due == {_g(1): 20.0}
    assert merged.undue == {_g(0), _g(2)}
    assert merged.changed


def test_nothing_changed_when_no_effect_changed() -> None:
    assert not merge_effects([Effects(changed=False), Effects(changed=False)]).changed
    assert merge_effects([]).due == {}
