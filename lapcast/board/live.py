"""The board's I/O: read the session's retained topics, redraw at a steady rate.

Two tasks share one ``BoardStore``: ``listen`` feeds it every message of the
session's state, status, meta and consumer-health topics (reconnecting with
backoff: the broker re-sends the retained messages on every subscribe, so a
reconnect or a late start shows everything at once), and ``draw`` redraws at most
``fps`` times a second, only when something changed, however fast the replay runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiomqtt
import structlog
from rich.console import Console
from rich.live import Live

from lapcast.board.render import render_board
from lapcast.board.store import BoardStore, board_topics
from simulator.connection import BrokerSettings

__all__ = ["BoardSettings", "listen", "run_board"]

log = structlog.get_logger()

_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, kw_only=True)
class BoardSettings:
    session_id: str
    # Frames per second at most: a steady rate whatever the replay speed.
    fps: float = 8.0
    # Return once the engine has finished and every state shown reflects its last event.
    exit_when_done: bool = False


async def listen(broker: BrokerSettings, store: BoardStore) -> None:
    """Feed ``store`` with the session's messages until cancelled; reconnect on loss."""
    attempt = 0
    filters = [(topic, 1) for topic in board_topics(store.session_id)]
    while True:
        try:
            # A refusal (bad credentials, not authorized) raises BrokerError: not retried.
            async with broker.client() as client:
                await client.subscribe(filters)
                store.set_connection("")
                attempt = 0
                async for message in client.messages:
                    payload = message.payload
                    data = payload if isinstance(payload, bytes | bytearray) else (
                        b"" if payload is None else str(payload).encode())
                    store.offer(str(message.topic), bytes(data))
        except aiomqtt.MqttError as exc:
            delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            attempt += 1
            log.info("board lost the broker", broker=broker.describe(), error=str(exc),
                     retry_in_s=delay)
            store.set_connection(f"broker {broker.describe()} unreachable ({exc}); "
                                 f"retrying in {delay:g} s")
            await asyncio.sleep(delay)


async def draw(store: BoardStore, settings: BoardSettings, live: Live) -> None:
    """Redraw on a fixed cadence; return when done (with ``exit_when_done``)."""
    period = 1.0 / settings.fps
    drawn = -1
    deadline = time.monotonic()
    while True:
        if store.version != drawn:
            drawn = store.version
            live.update(render_board(store.snapshot()), refresh=True)
        if settings.exit_when_done and store.snapshot().finished:
            return
        # Absolute deadlines: the cadence does not drift with the cost of a frame.
        deadline = max(deadline + period, time.monotonic())
        await asyncio.sleep(deadline - time.monotonic())


async def run_board(
    broker: BrokerSettings, settings: BoardSettings, *, console: Console | None = None
) -> None:
    """Show the board until cancelled (or until done, with ``exit_when_done``)."""
    store = BoardStore(settings.session_id)
    with Live(render_board(store.snapshot()), console=console, auto_refresh=False,
              transient=False) as live:
        try:
            async with asyncio.TaskGroup() as tasks:
                listener = tasks.create_task(listen(broker, store))
                await draw(store, settings, live)
                listener.cancel()
        finally:
            # The last frame stays on the terminal after the board stops.
            live.update(render_board(store.snapshot()), refresh=True)
