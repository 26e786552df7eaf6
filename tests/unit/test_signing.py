"""Signed webhook tokens."""

from __future__ import annotations

import pytest

from strangler_bridge.errors import Unauthorized
from strangler_bridge.signing import sign, verify

pytestmark = pytest.mark.unit


def test_round_trip() -> None:
    token = sign("secret", "tts", ["tts_abc", "0", "1"], 60, now=1000)
    assert verify("secret", "tts", token, now=1010) == ["tts_abc", "0", "1"]


@pytest.mark.parametrize(
    ("secret", "purpose", "now", "message"),
    [
        ("other", "tts", 1010, "signature"),
        ("secret", "img", 1010, "not valid for this route"),
        ("secret", "tts", 1061, "expired"),
    ],
)
def test_rejects_forged_misused_or_expired(secret: str, purpose: str, now: int, message: str) -> None:
    token = sign("secret", "tts", ["tts_abc", "0", "1"], 60, now=1000)
    with pytest.raises(Unauthorized, match=message):
        verify(secret, purpose, token, now=now)


@pytest.mark.parametrize("token", [None, "", "abc", "a.b", "!!!.xyz"])
def test_rejects_malformed(token: str | None) -> None:
    with pytest.raises(Unauthorized):
        verify("secret", "tts", token)


def test_tampered_payload_fails() -> None:
    token = sign("secret", "tts", ["tts_abc", "0", "1"], 60, now=1000)
    forged = sign("secret", "tts", ["tts_xyz", "0", "1"], 60, now=1000).split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(Unauthorized, match="signature"):
        verify("secret", "tts", forged, now=1001)
