"""When a live consumer publishes: at most once every N ms, state, changes and health.

Something worth publishing (an applied event, a dead letter, a status) sets
``dirty``; ``Publisher.run`` then publishes at once if the last publication is
older than the interval, or when it is due. One publication is the retained state
stamped with its ``(epoch, seq)`` (only if it moved, or if the broker holds a state
we did not write), the changed rows, the ``on_changes`` hook, and the retained
health (when it changed, or every health interval). What a state document holds is
``publication.py``'s business.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, Final

import aiomqtt
import structlog

from consumers.api import Consumer
from consumers.health import Health
from consumers.publication import StateRenderer
from consumers.sequencer import Sequencer
from consumers.stamps import Stamps

__all__ = ["RENDER_BUDGET", "AtMostEvery", "Publisher"]

log = structlog.get_logger()

# Publishing costs O(state) on the event loop, folding O(1) per event. So that a huge
# state (10,000 cars) does not starve the fold, the interval stretches to this many
# times the last rendering: at most ~1/N of the time goes to publishing.
RENDER_BUDGET: Final = 5


class AtMostEvery:
    """"At most once every ``interval_s``, the first time at once", stretched by cost.

    ``wait_s(cost_s)`` says how long to wait before the next action, given what the
    last one cost; ``done()`` notes that it happens now.
    """

    __slots__ = ("_last", "budget", "clock", "interval_s")

    def __init__(self, interval_s: float, *, budget: float = RENDER_BUDGET,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.budget = budget
        self.clock = clock
        self._last = -math.inf

    def wait_s(self, cost_s: float = 0.0) -> float:
        interval = max(self.interval_s, self.budget * cost_s)
        return max(0.0, self._last + interval - self.clock())

    def done(self) -> None:
        self._last = self.clock()


class Publisher:
    """Publishes one consumer's state and health, coalesced (see the module docstring)."""

    def __init__(self, *, consumer: Consumer[Any], session_id: str, sequencer: Sequencer,
                 stamps: Stamps, health: Health, state_topic: str, changes_topic: str,
                 health_topic: str, publish_ms: int, health_ms: int) -> None:
        self.consumer = consumer
        self.sequencer = sequencer
        self.stamps = stamps
        self.health = health
        self.state_topic = state_topic
        self.changes_topic = changes_topic
        self.health_topic = health_topic
        self.health_s = health_ms / 1000
        # Set by anything worth publishing; cleared when the publication starts.
        self.dirty = asyncio.Event()
        # The state document last published (the broker echoes it back to us).
        self.last_state: bytes | None = None
        self._schedule = AtMostEvery(publish_ms / 1000)
        self._renderer = StateRenderer(projection=consumer.name, session_id=session_id)
        self._published_pos: tuple[int, int] | None = None
        self._force_state = False
        self._render_s = 0.0  # how long the last state took to render (view, encode, diff)
        self._last_health: bytes | None = None
        self._health_at = 0.0

    def replace_state(self) -> None:
        """The broker holds a state we did not write: publish ours again, even unmoved."""
        self._force_state = True
        self.dirty.set()

    async def run(self, client: aiomqtt.Client) -> None:
        while True:
            await self.dirty.wait()
            # A state that takes long to render is published less often (RENDER_BUDGET).
            delay = self._schedule.wait_s(self._render_s)
            if delay > 0:
                await asyncio.sleep(delay)
            self.dirty.clear()
            self._schedule.done()
            await self.publish(client)

    async def heartbeat(self) -> None:
        """Publish at least every health interval, so the health's ``lag_ms`` moves."""
        while True:
            await asyncio.sleep(self.health_s)
            self.dirty.set()

    async def publish(self, client: aiomqtt.Client) -> None:
        folder = self.sequencer.folder
        position = (folder.epoch, folder.seq)
        if folder.seq > 0 and (position != self._published_pos or self._force_state):
            started = time.perf_counter()
            rendered = self._renderer.render(
                epoch=folder.epoch, seq=folder.seq,
                session_time_ms=self.stamps.session_time_ms,
                published_at_ns=self.stamps.published_at_ns, view=folder.view(),
                log_id=folder.log_id,
            )
            self._render_s = time.perf_counter() - started
            self._published_pos, self._force_state = position, False
            self.last_state = rendered.state
            await client.publish(self.state_topic, rendered.state, qos=1, retain=True)
            if rendered.changes_payload is not None:
                await client.publish(self.changes_topic, rendered.changes_payload, qos=1)
            if rendered.changes and self.consumer.on_changes is not None:
                try:
                    self.consumer.on_changes(rendered.changes)
                except Exception:  # a user's hook must not stop the fold
                    log.exception("on_changes hook failed", consumer=self.consumer.name)
        health = self.health.payload()
        now = time.monotonic()
        if health != self._last_health or now - self._health_at >= self.health_s:
            self._last_health, self._health_at = health, now
            await client.publish(self.health_topic, health, qos=1, retain=True)
