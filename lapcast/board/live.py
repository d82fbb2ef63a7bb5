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
from rich.console import Console
from rich.live import Live

from lapcast.board.render import render_board
from lapcast.board.store import BoardStore, board_topics
from simulator.mqtt.backoff import Backoff
from simulator.mqtt.payload import payload_bytes
from simulator.mqtt.reconnect import Reconnector
from simulator.mqtt.settings import BrokerSettings

__all__ = ["BoardSettings", "listen", "run_board"]


@dataclass(frozen=True, kw_only=True)
class BoardSettings:
    session_id: str
    # Frames per second at most: a steady rate whatever the replay speed.
    fps: float = 8.0
    # Return once the engine has finished and every state shown reflects its last event.
    exit_when_done: bool = False


async def listen(broker: BrokerSettings, store: BoardStore) -> None:
    """Feed ``store`` with the session's messages until cancelled; reconnect on loss."""
    filters = [(topic, 1) for topic in board_topics(store.session_id)]

    def lost(exc: aiomqtt.MqttError, delay_s: float) -> None:
        store.set_connection(f"broker {broker.describe()} unreachable ({exc}); "
                             f"retrying in {round(delay_s, 1):g} s")

    # Never set: the board listens until it is cancelled.
    reconnector = Reconnector(what="board", stop=asyncio.Event(), on_lost=lost,
                              backoff=Backoff(min_s=0.4, max_s=5.0), log_level="info")

    async def connection() -> None:
        # A refusal (bad credentials, not authorized) raises BrokerError: not retried.
        async with broker.client() as client:
            await client.subscribe(filters)
            reconnector.connected()
            store.set_connection("")
            async for message in client.messages:
                store.offer(str(message.topic), payload_bytes(message))

    await reconnector.run(connection)


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
