"""QoS 1 delivery with a bounded window of unacknowledged messages, resent on reconnect.

Publishes are pipelined: up to ``window`` publish coroutines are in flight at once
(each waits for its PUBACK). They are started in ``seq`` order and paho writes them
to the socket in that order, so the broker receives them in order. Messages stay
in ``pending``, in order, until they and everything before them are acknowledged;
after a lost connection the engine reconnects and ``resend`` publishes everything
from the first unacknowledged message on, again in order. A message the broker had
received but not yet acknowledged is sent twice: consumers dedupe by ``seq``.

Write-ahead: ``send`` only queues a message; ``launch_queued`` publishes the queue
once the journal has flushed the events it carries (``WriteAhead``), so nothing
goes on the wire that the journal lacks.

Every message carries the MQTT v5 user property ``published_at_ns`` (the wall clock,
``time.time_ns()``, when it was handed to the client) for latency measurements; under
MQTT 3.1.1 (no properties) the message goes out in the contract's ``Enveloped``
instead, the stamp beside the message's bytes (the journal keeps the bare event).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from simulator import contract
from simulator.mqtt.workarounds import PublishedAt

__all__ = ["PUBLISHED_AT", "Delivery", "Outgoing", "PublishedAt"]

PUBLISHED_AT: Final = contract.PUBLISHED_AT
@dataclass(slots=True, eq=False)
class Outgoing:
    """One MQTT message: one event, or a batch of consecutive events of one epoch."""

    epoch: int
    first_seq: int
    last_seq: int
    payload: bytes
    acked: bool = False

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


class Delivery:
    """The window of unacknowledged messages of one engine, across its connections."""

    def __init__(self, topic: str, *, window: int,
                 on_acked: Callable[[Outgoing], None] | None = None) -> None:
        if window < 1:
            raise ValueError(f"window {window} must be at least 1")
        self.topic = topic
        self.window = window
        self.on_acked = on_acked
        self.pending: deque[Outgoing] = deque()
        self._queued: list[Outgoing] = []  # sent, not yet launched (journal not flushed)
        self.resent = 0  # messages published again after a reconnect
        self._client: Any = None
        self._v311 = False
        self._tg: asyncio.TaskGroup | None = None
        self._slots = asyncio.Semaphore(window)
        self._drained = asyncio.Event()
        self._drained.set()

    def attach(self, client: Any, tg: asyncio.TaskGroup) -> None:
        """Publish through ``client``; publish tasks live in ``tg`` (one per connection)."""
        self._client = client
        self._tg = tg
        # MQTT 3.1.1: the stamp travels in an envelope (CheckedClient.mqtt_v311).
        self._v311 = bool(getattr(client, "mqtt_v311", False))
        self._queued = []  # resend() publishes every pending message
        # A fresh window: the slots of the tasks the old connection cancelled are void.
        self._slots = asyncio.Semaphore(self.window)

    @property
    def client(self) -> Any:
        """The connection publishing now (None between connections)."""
        return self._client

    def detach(self) -> None:
        self._client = None
        self._tg = None

    async def reserve(self) -> None:
        """Wait for a free slot in the window; ``send`` or ``release`` must follow."""
        await self._slots.acquire()

    def release(self) -> None:
        """Give back a slot reserved but not used."""
        self._slots.release()

    def send(self, item: Outgoing) -> None:
        """Queue ``item`` in a slot already reserved (no await: order is kept);
        ``launch_queued`` publishes it once its events are journaled."""
        self.pending.append(item)
        self._drained.clear()
        self._queued.append(item)

    def launch_queued(self) -> None:
        """Publish what ``send`` queued, in order (the journal has flushed it).

        Between connections, or while a lost one shuts down, the messages stay
        pending: the next connection's ``resend`` publishes them.
        """
        queued = self._queued
        if not queued:
            return
        self._queued = []
        if self._tg is None:
            return
        for item in queued:
            if not self._launch(item):
                return

    def drop_queued(self) -> int:
        """Forget the messages not launched yet (their events never reached the journal:
        they must never be published); returns how many."""
        queued = self._queued
        self._queued = []
        for _ in queued:  # the queued messages are the tail of pending
            self.pending.pop()
        if not self.pending:
            self._drained.set()
        return len(queued)

    async def resend(self) -> int:
        """Publish every pending message again, in order (after a reconnect, once the
        journal is flushed)."""
        self._queued = []
        items = list(self.pending)
        for item in items:
            item.acked = False
            await self._slots.acquire()
            self._launch(item)
        self.resent += len(items)
        return len(items)

    async def drained(self) -> None:
        """Wait until every message sent has been acknowledged."""
        await self._drained.wait()

    @property
    def first_unacked_seq(self) -> tuple[int, int] | None:
        """``(epoch, seq)`` from which a reconnect resends, or None if all are acknowledged."""
        if not self.pending:
            return None
        head = self.pending[0]
        return head.epoch, head.first_seq

    def _launch(self, item: Outgoing) -> bool:
        """False if the connection's task group is shutting down (a lost connection)."""
        assert self._tg is not None, "launch before attach()"
        publish = self._publish(self._client, self._slots, item)
        try:
            # Not tracked one by one: the connection's task group cancels what is left.
            self._tg.create_task(publish)
        except RuntimeError:
            publish.close()
            return False
        return True

    async def _publish(self, client: Any, slots: asyncio.Semaphore, item: Outgoing) -> None:
        payload: bytes = item.payload
        props: PublishedAt | None = PublishedAt(time.time_ns())
        if self._v311:
            assert props is not None
            payload = contract.envelope(payload, props.ns, contract.sniff_encoding(payload))
            props = None
        try:
            # No timeout: a lost connection ends the engine's reader loop, which
            # cancels this task; a timeout would only add a timer per message.
            await client.publish(self.topic, payload, qos=1, properties=props,
                                 timeout=math.inf)
        finally:
            slots.release()
        item.acked = True
        pending = self.pending
        while pending and pending[0].acked:
            done = pending.popleft()
            if self.on_acked is not None:
                self.on_acked(done)
        if not pending:
            self._drained.set()
