"""Pacing against absolute deadlines, with a clock that tests can replace.

An event at session time ``t`` is due at ``anchor_wall + (t - anchor_ms) / speed``.
Every deadline is computed from the anchor, never from the previous event, so
rounding and scheduling delays do not accumulate over an 8- or 24-hour session.
Pause, resume, a speed change and a seek each move the anchor: after a pause of
``d`` seconds every remaining deadline is exactly ``d`` later.

``speed`` None means ``max``: every event is due at once and the broker's
acknowledgements (the delivery window) set the pace.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "MonotonicClock", "Pacer", "TimerHandle"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Seconds on a monotonic scale, and a timer on the same scale."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


class MonotonicClock:
    """The real clock: ``time.monotonic``, which is also the event loop's clock."""

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told (``advance``), for exact tests.

    With ``auto_advance`` it jumps to each timer as soon as the loop is idle enough
    to run it: a paced replay then runs at full speed with every event published at
    exactly its deadline.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = False) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _ManualTimer(self._now + max(delay, 0.0), callback)
        if self.auto_advance:
            asyncio.get_running_loop().call_soon(self._jump, timer)
        else:
            heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def _jump(self, timer: _ManualTimer) -> None:
        if not timer.cancelled:
            self._now = max(self._now, timer.when)
            timer.callback()

    def advance(self, seconds: float) -> None:
        """Move time forward, firing the timers that fall due, in order."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._now = max(self._now, when)
                timer.callback()
        self._now = target


class Pacer:
    """When each event falls due; pause, resume, speed and seek move the anchor."""

    def __init__(self, *, clock: Clock, speed: float | None = 1.0, position_ms: int = 0) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed {speed} must be above 0 (or None for max)")
        self.clock = clock
        self._speed = speed
        # Session time ``_anchor_ms`` (a float: re-anchoring never rounds) was, or will
        # be, at clock time ``_anchor_wall``.
        self._anchor_wall = clock.now()
        self._anchor_ms = float(position_ms)
        self._paused_at: float | None = None
        self._position_ms = position_ms  # last event handed out (the position under max)
        self._wake: asyncio.Future[None] | None = None

    # --- state ------------------------------------------------------------------------

    @property
    def speed(self) -> float | None:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def deadline(self, session_ms: float) -> float | None:
        """Clock time at which ``session_ms`` falls due; None under ``max``."""
        if self._speed is None:
            return None
        return self._anchor_wall + (session_ms - self._anchor_ms) / (1000.0 * self._speed)

    def _position(self, now: float) -> float:
        if self._speed is None:
            return float(self._position_ms)
        at = self._paused_at if self._paused_at is not None else now
        return self._anchor_ms + (at - self._anchor_wall) * 1000.0 * self._speed

    def session_time_ms(self) -> int:
        """Where the session clock stands now (frozen while paused)."""
        return int(self._position(self.clock.now()))

    def is_due(self, session_ms: float, now: float | None = None) -> bool:
        if self._paused_at is not None:
            return False
        deadline = self.deadline(session_ms)
        if deadline is None:
            return True
        return (self.clock.now() if now is None else now) >= deadline

    def lateness(self, session_ms: int, now: float | None = None) -> float | None:
        """Seconds past the deadline of ``session_ms`` (negative: early); None under max."""
        deadline = self.deadline(session_ms)
        if deadline is None:
            return None
        return (self.clock.now() if now is None else now) - deadline

    def mark(self, session_ms: int) -> None:
        """The engine handed out an event of ``session_ms``."""
        self._position_ms = session_ms

    # --- changes: each re-anchors and wakes a waiting ``wait_due`` --------------------

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self.clock.now()
            self._changed()

    def resume(self) -> None:
        """Every remaining deadline moves by exactly the time spent paused."""
        if self._paused_at is not None:
            self._anchor_wall += self.clock.now() - self._paused_at
            self._paused_at = None
            self._changed()

    def set_speed(self, speed: float | None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed {speed} must be above 0 (or None for max)")
        now = self.clock.now()
        # Re-anchor where the session clock stands (the instant of the pause if paused).
        self._anchor_ms = self._position(now)
        self._anchor_wall = self._paused_at if self._paused_at is not None else now
        self._speed = speed
        self._changed()

    def seek(self, session_ms: int) -> None:
        """The session clock jumps to ``session_ms``; earlier events are overdue at once."""
        self._anchor_ms = float(session_ms)
        self._anchor_wall = self._paused_at if self._paused_at is not None else self.clock.now()
        self._position_ms = session_ms
        self._changed()

    def _changed(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # --- waiting ----------------------------------------------------------------------

    async def wait_due(self, session_ms: float) -> bool:
        """Wait until ``session_ms`` is due (True) or something changed (False: look again)."""
        if self._paused_at is not None:
            await self.wait_change()
            return False
        deadline = self.deadline(session_ms)
        if deadline is None:
            return True
        delay = deadline - self.clock.now()
        if delay <= 0:
            return True
        wake = self._wake = asyncio.get_running_loop().create_future()

        def due() -> None:
            if not wake.done():
                wake.set_result(None)

        timer = self.clock.call_later(delay, due)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None
        return self.is_due(session_ms)

    async def wait_change(self) -> None:
        """Wait for the next pause, resume, speed change or seek."""
        wake = self._wake = asyncio.get_running_loop().create_future()
        try:
            await wake
        finally:
            self._wake = None
