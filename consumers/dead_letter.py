"""Dead letters: what a consumer refused, with the reason and the original bytes.

Bad input is data, not a crash: the consumer publishes it on
``.../dead-letter`` and carries on. Payloads over ``MAX_KEPT`` bytes (an
oversized message, refused for its size) are cut, and say so.

``DeadLetterOutbox`` counts each letter at once (the health shows it) and queues it;
its ``run`` loop publishes the queue while connected, so the hot path never waits
for the broker.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Final

import aiomqtt
import structlog

from consumers.guard import Refusal
from consumers.health import Counters
from simulator.contract import DeadLetter, encode

__all__ = ["MAX_KEPT", "DeadLetter", "DeadLetterOutbox", "dead_letter"]

log = structlog.get_logger()

MAX_KEPT: Final = 64 * 1024


def dead_letter(*, consumer: str, topic: str, reason: str, payload: bytes) -> bytes:
    """The JSON document published on the dead-letter topic."""
    kept = payload[:MAX_KEPT]
    return encode(DeadLetter(
        consumer=consumer,
        topic=topic,
        reason=reason,
        payload_base64=base64.b64encode(kept).decode("ascii"),
        size=len(payload),
        truncated=len(kept) < len(payload),
    ))


class DeadLetterOutbox:
    """Dead letters of one consumer: counted when written, published by ``run``."""

    def __init__(self, *, consumer: str, topic: str, counters: Counters,
                 dirty: asyncio.Event, maxsize: int = 10_000) -> None:
        self.consumer = consumer
        self.topic = topic
        self.counters = counters
        # Set with every letter: the health (its counts) is worth publishing.
        self._dirty = dirty
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=maxsize)

    def reject(self, topic: str, payload: bytes, refusal: Refusal) -> None:
        """A guard's refusal: counted as refused too when the message looks forged."""
        if refusal.forged:
            self.refuse(topic, payload, refusal.reason)
        else:
            self.dead(topic, payload, refusal.reason)

    def refuse(self, topic: str, payload: bytes, reason: str) -> None:
        self.counters.refused += 1
        self.dead(topic, payload, f"refused: {reason}")

    def dead(self, topic: str, payload: bytes, reason: str) -> None:
        self.counters.dead_letters += 1
        log.warning("dead letter", consumer=self.consumer, topic=topic, reason=reason)
        letter = dead_letter(consumer=self.consumer, topic=topic, reason=reason,
                             payload=payload)
        try:
            self._queue.put_nowait(letter)
        except asyncio.QueueFull:
            log.error("dead-letter outbox full; letter counted but not published")
        self._dirty.set()

    async def run(self, client: aiomqtt.Client) -> None:
        """Publish the letters, oldest first, for as long as the connection lasts."""
        while True:
            letter = await self._queue.get()
            await client.publish(self.topic, letter, qos=1)
