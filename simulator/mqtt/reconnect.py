"""The one reconnect loop: the engine, every consumer and the boards use it.

A connection is the caller's coroutine (connect, subscribe, work until told to stop
or until the broker goes away). This loop runs it again after a lost connection,
waiting a jittered exponential backoff, until the caller's ``stop`` event is set or
the connection returns normally. Refusals that retrying cannot help (bad
credentials, an ACL refusal: ``BrokerError``) are not ``MqttError`` and end the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt
import structlog

from simulator.mqtt.backoff import Backoff

__all__ = ["Reconnector"]

log = structlog.get_logger()


@dataclass(kw_only=True)
class Reconnector:
    """Runs one connection after another; ``connected()`` once each one is up."""

    # Who is connecting, for the log ("replay", "consumer running-order", "board").
    what: str
    stop: asyncio.Event
    backoff: Backoff = field(default_factory=Backoff)
    # Called with the error and the wait before the next attempt (a board shows it).
    on_lost: Callable[[aiomqtt.MqttError, float], None] | None = None
    # How a lost connection is logged: "info" where the loss is shown otherwise (the
    # board's status line, drawn over the terminal that stderr shares).
    log_level: str = "warning"
    # Connections lost so far (a consumer's health reports it).
    reconnects: int = 0
    connections: int = 0

    def connected(self) -> None:
        """The connection is up: the next loss starts the backoff from the shortest wait."""
        self.connections += 1
        self.backoff.reset()

    async def run(self, connection: Callable[[], Awaitable[None]]) -> None:
        """Run ``connection()`` until it returns or ``stop`` is set; retry on ``MqttError``."""
        while not self.stop.is_set():
            try:
                await connection()
                return
            except aiomqtt.MqttError as exc:
                self.reconnects += 1
                delay = self.backoff.next()
                getattr(log, self.log_level)("broker connection lost; reconnecting",
                                             who=self.what, error=str(exc),
                                             retry_in_s=round(delay, 3))
                if self.on_lost is not None:
                    self.on_lost(exc, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stop.wait()
