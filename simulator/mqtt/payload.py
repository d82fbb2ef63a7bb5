"""The bytes of an incoming message, whatever type aiomqtt hands over.

``aiomqtt.Message.payload`` is typed ``str | bytes | bytearray | int | float | None``;
a message from the broker carries bytes, but every reader would otherwise check.
Written once here: the consumers and the board read ``payload_bytes(message)``.
"""

from __future__ import annotations

import aiomqtt

__all__ = ["payload_bytes"]


def payload_bytes(message: aiomqtt.Message) -> bytes:
    """The payload as ``bytes``: an absent one is ``b""``, text is UTF-8 encoded."""
    payload = message.payload
    if type(payload) is bytes:  # what the broker sends: no copy
        return payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
