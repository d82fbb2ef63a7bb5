"""The engine's status: one document, published retained on ``.../status``.

``status_document`` is the one place that says what the document holds, and
``final_status`` how a connection ended (``error`` with the reason when the journal
failed). ``StatusPublisher`` publishes the document on every change (``now()``,
coalesced) and every ``interval_s`` anyway, and with an ``accepted`` or
``rejected`` answer to a control message, or a final state when the engine stops.

It is also the engine's announcement of its head (``head_seq``), which is as far as
consumers believe the events topic (``consumers/belief.py``): while events are
handed out (``handed``), it publishes at most ``ANNOUNCE_EVERY_S`` after the first
one since the last announcement, and at once past ``ANNOUNCE_EVERY_EVENTS``. That
costs one integer comparison per message on the hot path, and a status document
per 20 ms while publishing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simulator.contract import ANNOUNCE_EVERY_EVENTS, ANNOUNCE_EVERY_S, EngineStatus, encode

if TYPE_CHECKING:
    import aiomqtt

    from simulator.replay.engine import ReplayEngine

__all__ = ["StatusPublisher", "final_status", "status_document"]


def status_document(engine: ReplayEngine, **extra: Any) -> EngineStatus:
    """What ``.../status`` says about ``engine`` (``extra`` sets fields: ``state``,
    ``reason``, ``accepted``, ``rejected``)."""
    acked_epoch, acked_seq = engine.acked
    publisher = engine.publisher
    cursor = publisher.cursor if publisher is not None else None
    pacer = engine.pacer
    speed = pacer.speed
    return EngineStatus(
        state=extra.pop("state", None) or engine.state(),
        session_id=engine.session_id,
        epoch=engine.epoch,
        last_seq=acked_seq if acked_epoch == engine.epoch else 0,
        # Journaled and handed out: every seq on the wire is at most this.
        head_seq=cursor.handed if cursor is not None and cursor.epoch == engine.epoch
        else 0,
        total_events=engine.total_events,
        session_time_ms=min(max(pacer.session_time_ms(), 0), engine.end_ms),
        end_ms=engine.end_ms,
        speed="max" if speed is None else speed,
        lag_ms=engine.lag_ms(),
        events_published=engine.stats.events_published,
        batch=engine.settings.batch,
        encoding=engine.settings.encoding,
        log_id=engine.log_id,
        **extra,
    )


def final_status(engine: ReplayEngine, error: BaseException | None) -> dict[str, Any]:
    """The fields of a connection's last status: ended by ``error``, or by a stop."""
    write_ahead = engine.write_ahead
    if write_ahead is not None and write_ahead.failure is not None:
        return {"state": "error", "reason": str(write_ahead.failure)}
    if error is not None:
        return {"state": "lost", "reason": str(error)}
    return {"state": "finished" if engine.finished else "stopped"}


class StatusPublisher:
    """Publishes the status document, retained, at QoS 1."""

    def __init__(self, topic: str, document: Callable[..., EngineStatus], *,
                 interval_s: float) -> None:
        self.topic = topic
        self.document = document
        self.interval_s = interval_s
        self._now = asyncio.Event()
        # The head announcement: publish again once a handed seq reaches this...
        self._announce_at = 0
        # ... or ANNOUNCE_EVERY_S after the first seq handed since the last one.
        self._tick: asyncio.TimerHandle | None = None

    def now(self) -> None:
        """Something changed: publish soon (changes in a row give one publication)."""
        self._now.set()

    def handed(self, seq: int) -> None:
        """Events up to ``seq`` were handed out (the hot path: keep it cheap)."""
        if seq >= self._announce_at:
            self._now.set()
        elif self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(ANNOUNCE_EVERY_S,
                                                               self._now.set)

    async def publish(self, client: aiomqtt.Client, *, timeout: float = math.inf,
                      **extra: Any) -> None:
        # No timeout by default: a lost connection ends the reader loop, which cancels
        # the connection's tasks (asyncio.wait_for in 3.11 can swallow that cancel).
        doc = self.document(**extra)
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        head = doc.head_seq if isinstance(doc.head_seq, int) else 0
        self._announce_at = head + ANNOUNCE_EVERY_EVENTS
        await client.publish(self.topic, encode(doc),
                             qos=1, retain=True, timeout=timeout)

    async def loop(self, client: aiomqtt.Client) -> None:
        """Status on every change (coalesced) and every ``interval_s`` anyway."""
        loop = asyncio.get_running_loop()
        self._now.set()
        while True:
            tick = loop.call_later(self.interval_s, self._now.set)
            try:
                await self._now.wait()
            finally:
                tick.cancel()
            self._now.clear()
            await self.publish(client)
