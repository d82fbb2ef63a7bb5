"""The engine's connections to the broker, one after another.

``BrokerLink.run`` connects (a ``CheckedClient`` with the last will ``LOST_STATUS``),
runs the engine's work for that connection in a task group, and on a lost
connection reconnects through the one reconnect loop (``simulator.mqtt``'s
``Reconnector``); a refusal (``BrokerError``) is final. A clean stop lets the
outstanding messages be acknowledged (``stop_grace_s``), publishes the final state
and ends every task of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import aiomqtt
import structlog

from simulator import contract
from simulator.mqtt.backoff import Backoff
from simulator.mqtt.reconnect import Reconnector
from simulator.replay.delivery import Delivery
from simulator.replay.status import StatusPublisher

if TYPE_CHECKING:
    from simulator.replay.engine import ReplaySettings, ReplayStats

__all__ = ["LOST_STATUS", "BrokerLink"]

log = structlog.get_logger()

# The last will on the status topic: what a subscriber sees when the engine dies.
LOST_STATUS: Final = contract.ENGINE_LOST


class BrokerLink:
    """Connect, serve, reconnect; ``spawn`` starts a task of the current connection."""

    def __init__(self, *, settings: ReplaySettings, session_id: str, stats: ReplayStats,
                 delivery: Delivery, status: StatusPublisher, stop: asyncio.Event,
                 serve: Callable[[aiomqtt.Client], Awaitable[asyncio.Task[None]]],
                 final_status: Callable[[BaseException | None], dict[str, Any]]) -> None:
        self.settings = settings
        self.session_id = session_id
        self.stats = stats
        self.delivery = delivery
        self.status = status
        self.stop = stop
        # The engine's work on a new connection; returns the task that publishes
        # (cancelled first on a clean stop, before the last acknowledgements).
        self.serve = serve
        # The last status of a connection (state, reason), ended by an error or a stop.
        self.final_status = final_status
        self.connected = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._reconnector = Reconnector(
            what="replay", stop=stop,
            backoff=Backoff(min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s),
            on_lost=lambda exc, delay: log.info("replay connection lost",
                                                pending=len(delivery.pending)))

    def client_kwargs(self) -> dict[str, Any]:
        s = self.settings
        client_id = s.client_id or f"lapcast-replay-{self.session_id}-{uuid.uuid4().hex[:6]}"
        return dict(
            identifier=client_id,
            will=aiomqtt.Will(self.status.topic, LOST_STATUS, qos=1, retain=True),
            max_inflight_messages=s.window,
            # Nagle stays on here, unlike every other lapcast client: each events message
            # is QoS 1, so the broker's PUBACK carries the TCP ACK back at once and Nagle
            # never waits on a delayed ACK; it only packs back-to-back messages into fewer
            # segments (one event a message at max speed: 84% of a bare aiomqtt loop's
            # rate with it, 79% without; bench/replay.py).
            socket_options=(),
            keepalive=s.keepalive_s,
        )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task of the current connection (cancelled with it, or when stopping)."""
        assert self._tg is not None
        return self._tg.create_task(coro)

    async def run(self) -> None:
        """Until stopped; ``BrokerError`` and the engine's own errors end it."""
        await self._reconnector.run(self._connection)

    async def _connection(self) -> None:
        try:
            # A CheckedClient: a refused connection or publish (ACL) is a BrokerError,
            # final; an unreachable or lost broker is an MqttError, retried.
            async with self.settings.broker.client(**self.client_kwargs()) as client:
                # aiomqtt warns above 10 pending calls; our window is deliberate.
                client.pending_calls_threshold = 1 << 30
                self._reconnector.connected()
                self.stats.connections += 1
                try:
                    await self._session(client)
                except aiomqtt.MqttError:
                    raise
                except Exception as exc:
                    await self._say_lost(client, exc)
                    raise
        finally:
            self.connected.clear()
            self.delivery.detach()
            self._tg = None

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: the engine's work until stopped, then the final state."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.delivery.attach(client, tg)
                pump = await self.serve(client)
                self.connected.set()
                await self.stop.wait()
                pump.cancel()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.stop_grace_s):
                        await self.delivery.drained()
                # What is still running (publishes never acknowledged, a catch-up
                # answer) ends with the task group: raising cancels them all.
                raise _Stopping
        except BaseExceptionGroup as group:
            error = _single(group)
            if not isinstance(error, _Stopping):
                raise error from None
        await self.status.publish(client, timeout=self.settings.stop_grace_s,
                                  **self.final_status(None))

    async def _say_lost(self, client: aiomqtt.Client, exc: BaseException) -> None:
        """Best effort: a clean disconnect sends no last will, so say it ourselves."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.status.publish(client, **self.final_status(exc))


class _Stopping(Exception):
    """Raised in a connection's task group to end it (and its tasks) on a clean stop."""


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that ended a connection's task group: a final error before a lost
    connection (several publishes fail at once when the connection drops)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if not isinstance(exc, aiomqtt.MqttError | _Stopping):
            return exc
    for exc in leaves:
        if isinstance(exc, aiomqtt.MqttError):
            return exc
    return leaves[0]
