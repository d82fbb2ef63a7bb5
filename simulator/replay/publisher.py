"""The publishing path: due events from the cursor, journaled, out in one message.

``Publisher.pump`` is the engine's hot loop, one task per connection: wait for the
next event's deadline (``Pacer``), linger for later ones to share its message, wait
for a slot in the delivery window, then ``send_due``: take the due events (up to
``batch``), journal them (``WriteAhead``), hand one message to ``Delivery``. At the
end of an epoch it waits for the acknowledgements, tells the engine, and waits for a
command (a backward seek starts the next epoch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from simulator.contract import Batch, Encoding, Event, SessionStarted, encode
from simulator.replay.cursor import Cursor
from simulator.replay.delivery import Delivery, Outgoing
from simulator.replay.pacing import Clock, Pacer
from simulator.replay.writeahead import WriteAhead

if TYPE_CHECKING:
    from simulator.replay.engine import ReplayStats

__all__ = ["Publisher"]


def _split_empty_batch() -> tuple[bytes, bytes]:
    """``encode(Batch(events=[]))`` on either side of its empty list: a batch of events
    already encoded is the same bytes with the lines, comma-separated, in between."""
    doc = encode(Batch(events=[]))
    at = doc.index(b'"events":[]') + len(b'"events":[')
    return doc[:at], doc[at:]


_BATCH_HEAD, _BATCH_TAIL = _split_empty_batch()


def _json_batch(lines: list[bytes]) -> bytes:
    """``encode(Batch(events=...))`` of events already encoded (each line is the bytes
    the encoder writes for its event, the journal's line), without encoding them again."""
    return _BATCH_HEAD + b",".join(lines) + _BATCH_TAIL


class Publisher:
    """Paced, batched, journaled publishing of one cursor's events."""

    def __init__(self, *, cursor: Cursor, pacer: Pacer, clock: Clock, delivery: Delivery,
                 write_ahead: WriteAhead, stats: ReplayStats, batch: int, linger_ms: float,
                 encoding: Encoding, meta_topic: str,
                 spawn: Callable[[Coroutine[Any, Any, None]], object],
                 on_end: Callable[[], None],
                 on_handed: Callable[[int], None] | None = None) -> None:
        self.cursor = cursor
        self.pacer = pacer
        self.clock = clock
        self.delivery = delivery
        self.write_ahead = write_ahead
        self.stats = stats
        self.batch = batch
        self.linger_ms = linger_ms
        self.encoding = encoding
        self.meta_topic = meta_topic
        self.spawn = spawn  # a task of the current connection
        self.on_end = on_end  # the last event of the epoch is acknowledged
        # Events up to this seq are handed out: the status announces the head.
        self.on_handed = on_handed or _ignore
        self.handed_ms: int | None = None  # session time of the last event handed out
        self.meta: bytes | None = None  # the epoch's SessionStarted, encoded

    async def pump(self) -> None:
        pacer, delivery, cursor = self.pacer, self.delivery, self.cursor
        while True:
            event = cursor.peek()
            if event is None:
                await self._end_of_epoch()
                continue
            # One wait, to the deadline plus the linger (not one to each: a timer and a
            # wake-up less per message).
            if not await pacer.wait_due(self._send_at(event)):
                continue
            await delivery.reserve()
            # A command may have come in while we waited for a slot: look again.
            event = cursor.peek()
            if event is None or not pacer.is_due(event.session_time_ms):
                delivery.release()
                continue
            self.send_due()

    def _send_at(self, first: Event) -> float:
        """When the message that ``first`` opens leaves, in session time: its deadline,
        plus ``linger_ms`` for later events to batch with it when paced.

        The events due by then go in one message (up to ``batch``; the rest right after,
        being due). A command that changes the pacing meanwhile ends the wait (look again).
        """
        speed = self.pacer.speed
        if self.linger_ms <= 0 or self.batch < 2 or speed is None:
            return first.session_time_ms
        # The session time that falls due linger_ms after the first event.
        return first.session_time_ms + self.linger_ms * speed

    def send_due(self) -> None:
        """Take the due events (up to ``batch``), journal them, publish one message.

        No await in here: what is taken from the cursor is journaled and pending
        before anything else can run (a cancellation cannot lose it).
        """
        now = self.clock.now()
        pacer, cursor, batch = self.pacer, self.cursor, self.batch
        first = cursor.take()
        events = [first]
        while len(events) < batch:
            event = cursor.peek()
            if event is None or not pacer.is_due(event.session_time_ms, now):
                break
            events.append(cursor.take())
        lines = self.write_ahead.append(events)
        if len(events) > 1:
            payload = (_json_batch(lines) if self.encoding == "json"
                       else encode(Batch(events=events), self.encoding))
        elif self.encoding == "json":
            payload = lines[0]
        else:
            payload = encode(first, self.encoding)
        late = pacer.lateness(first.session_time_ms, now)
        if late is not None:
            self.stats.lateness_ms.append(late * 1000.0)
        last = events[-1]
        pacer.mark(last.session_time_ms)
        self.handed_ms = last.session_time_ms
        self.delivery.send(Outgoing(epoch=last.epoch, first_seq=first.seq, last_seq=last.seq,
                                    payload=payload))
        self.on_handed(last.seq)
        for event in events:
            if isinstance(event, SessionStarted):
                self.meta = encode(event, self.encoding)
                self.spawn(self.publish_meta())

    async def publish_meta(self) -> None:
        client = self.delivery.client
        if client is not None and self.meta is not None:
            await client.publish(self.meta_topic, self.meta, qos=1, retain=True,
                                 timeout=math.inf)

    async def _end_of_epoch(self) -> None:
        await self.delivery.drained()
        if self.cursor.peek() is not None:
            return  # a backward seek came in while the last acknowledgements did
        self.on_end()
        await self.pacer.wait_change()

    def restart(self, epoch: int) -> None:
        """A backward seek: seq 1 of ``epoch`` is next."""
        self.cursor.restart(epoch)
        self.handed_ms = None


def _ignore(seq: int) -> None:
    pass
