"""Dead letters: what a consumer refused, with the reason and the original bytes.

Bad input is data, not a crash: the consumer publishes it on
``.../dead-letter`` and carries on. Payloads over ``MAX_KEPT`` bytes (an
oversized message, refused for its size) are cut, and say so.
"""

from __future__ import annotations

import base64
from typing import Final

import msgspec

__all__ = ["MAX_KEPT", "DeadLetter", "dead_letter"]

MAX_KEPT: Final = 64 * 1024


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    consumer: str
    topic: str
    reason: str
    payload_base64: str
    size: int
    truncated: bool = False


def dead_letter(*, consumer: str, topic: str, reason: str, payload: bytes) -> bytes:
    """The JSON document published on the dead-letter topic."""
    kept = payload[:MAX_KEPT]
    return msgspec.json.encode(DeadLetter(
        consumer=consumer,
        topic=topic,
        reason=reason,
        payload_base64=base64.b64encode(kept).decode("ascii"),
        size=len(payload),
        truncated=len(kept) < len(payload),
    ))
