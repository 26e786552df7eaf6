"""Signing and verifying completion webhooks per the Standard Webhooks specification (``standardwebhooks``).

The service signs each attempt with every secret in ``STRANGLER_CALLBACK_SECRET`` (a rotation lists the new and
the old one; ``webhook-signature`` then carries both signatures), and a receiver accepts a body that any of
its secrets verifies. Secrets are ``whsec_`` followed by base64 (:func:`new_secret`; docs/OPERATIONS.md).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from strangler_bridge.contracts.callbacks import CallbackEvent
from strangler_bridge.errors import InvalidInput, Unauthorized

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret (24 random bytes, as Standard Webhooks suggests)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def check_secret(secret: str) -> str:
    """``secret`` if it is ``whsec_`` plus non-empty base64; ``ValueError`` otherwise (never echoing it)."""
    body = secret.removeprefix(PREFIX)
    try:
        decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a callback secret is whsec_ plus base64, e.g. whsec_$(openssl rand -base64 24)") from None
    if len(decoded) < 16:
        raise ValueError("a callback secret must hold at least 16 bytes")
    return secret


def signed_headers(secrets_: Sequence[str], webhook_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers of one attempt."""
    if not secrets_:
        raise InvalidInput("no callback secret is set (STRANGLER_CALLBACK_SECRET)")
    signatures = " ".join(Webhook(secret).sign(webhook_id, at, body) for secret in secrets_)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


def verify(secrets_: Sequence[str], body: bytes, headers: Mapping[str, str]) -> tuple[str, CallbackEvent]:
    """The ``webhook-id`` and event of a request any of ``secrets_`` signed within the last five minutes.

    :class:`Unauthorized` when no secret verifies it (or its timestamp is too old or too new),
    :class:`InvalidInput` when it verifies but is not a completion event.
    """
    if not secrets_:
        raise Unauthorized("this receiver has no callback secret (STRANGLER_CALLBACK_SECRET)")
    lowered = {key.lower(): value for key, value in headers.items()}
    for secret in secrets_:
        try:
            Webhook(secret).verify(body, lowered, json_parse=False)
        except WebhookVerificationError:
            continue
        try:
            return lowered["webhook-id"], CallbackEvent.model_validate_json(body)
        except ValidationError:
            raise InvalidInput("the signed body is not a completion event") from None
    raise Unauthorized("the webhook signature does not verify")
