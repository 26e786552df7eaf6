"""Opaque ids with a type prefix (``tts_...``, ``img_...``, ``job_...``)."""

from __future__ import annotations

import re
import secrets

ID_PATTERN = r"^[a-z]{2,5}_[A-Za-z0-9]{8,64}$"
_ID_RE = re.compile(ID_PATTERN)


def new_id(prefix: str) -> str:
    """A new random id such as ``tts_3k9f...`` (128 bits of randomness)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def is_valid_id(value: str, prefix: str | None = None) -> bool:
    """Whether ``value`` looks like one of our ids (optionally of one type); rejects path tricks."""
    if not _ID_RE.match(value):
        return False
    return prefix is None or value.startswith(prefix + "_")
