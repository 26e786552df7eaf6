"""The ``POST /events`` contract both halves share."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from flask_plugin.events import BridgeEvent
from flask_plugin.reporting import breaker_event
from strangler_bridge.contracts.events import BREAKER, NOTABLE, EventKind, EventKindName, EventReport
from strangler_bridge.contracts.flags import Phase


def test_the_wire_kinds_are_the_outcomes_and_breaker() -> None:
    assert set(get_args(EventKindName)) == {kind.value for kind in EventKind} | {BREAKER}


def test_notable_kinds_match_by_their_wire_name() -> None:
    # The service compares the kind it read (a plain string) with the set of EventKind members.
    assert "fallback" in NOTABLE
    assert "shadow_match" not in NOTABLE


def test_what_the_flask_side_sends_is_a_valid_report() -> None:
    outcome = BridgeEvent(EventKind.FALLBACK, Phase.TTS, "vid-1", "x" * 5000, {"code": "unreachable"}).to_dict()
    change = breaker_event(Phase.IMAGEGEN, {"state": "open", "since": "2026-01-01T00:00:00+00:00", "failures": 3})
    report = EventReport.model_validate({"events": [outcome, change], "source": "web-1"})
    assert [event.kind for event in report.events] == ["fallback", "breaker"]
    assert len(report.events[0].detail) == 1000  # cut, not refused


def test_a_report_with_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValidationError):
        EventReport.model_validate({"events": [{"kind": "surprise", "phase": "tts"}]})
